//! The user a container runs as, resolved in the container's own
//! `/etc/passwd` and `/etc/group`, and path resolution inside a rootfs.
