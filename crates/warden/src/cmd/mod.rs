//! One module per subcommand.

pub mod agent;
pub mod audit;
pub mod demo;
pub mod doctor;
pub mod init;
pub mod kill;
pub mod learn;
pub mod mcp;
pub mod policy;
pub mod quarantine;
pub mod run;
pub mod up;
