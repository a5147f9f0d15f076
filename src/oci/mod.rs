//! OCI runtime backends behind one trait.
