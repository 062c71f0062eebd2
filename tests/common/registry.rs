//! A real `docker-registry` on 127.0.0.1 on a free port, with a temp storage dir.
