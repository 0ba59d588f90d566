//! One module per subcommand.

pub mod agent;
pub mod audit;
pub mod demo;
pub mod init;
pub mod mcp;
pub mod policy;
pub mod up;
