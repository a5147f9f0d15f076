//! Capabilities, seccomp, AppArmor and masked paths of a container.
