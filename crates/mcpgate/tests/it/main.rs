//! End-to-end tests of the real `mcpgate` binary: each test spawns
//! `mcpgate serve` on `127.0.0.1:PORT` with its own data dir and drives it
//! over HTTP and through the operator CLI.

mod flow;
mod harness;

mod cli;
mod client;
mod config;
mod demo;
mod durability;
mod fleet;
mod no_auth;
mod no_secrets;
mod sandbox;
mod stack;
mod transport;
