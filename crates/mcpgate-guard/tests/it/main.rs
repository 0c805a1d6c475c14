//! The guard's one integration-test binary: attacks on validation, remote keys, introspection,
//! the validated-token cache, challenges and the tower layer.

mod attacks;
mod cache;
mod challenges;
mod dpop;
mod introspection;
mod remote;
mod revocation;
mod support;
