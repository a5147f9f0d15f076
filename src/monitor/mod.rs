//! The daemon's side of the per-container monitor (`peapod-monitor
//! container`): launching it, its exit file, its control socket.
