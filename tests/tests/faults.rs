//! Fault tolerance: kill -9 of control mid-write, PostgreSQL and OpenBao
//! stopped and restarted under load, SIGTERM drain under load.
