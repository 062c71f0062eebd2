//! Prerequisites of container tests (root, runc) and a busybox base made from `busybox-static`.
