//! Soak: concurrent writers and resolvers for a bounded time; zero errors and
//! bounded memory growth.
