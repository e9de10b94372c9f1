//! Pure domain rules: state machines, address allocation, validation, page tokens, idempotency,
//! traffic reports of data planes that run apart.
//!
//! Nothing in here does I/O or knows about axum or sqlx, so every rule is tested with plain `#[test]`s.

pub mod etag;
pub mod frontends;
pub mod idempotency;
pub mod instance;
pub mod net;
pub mod page;
pub mod traffic;
pub mod validate;
