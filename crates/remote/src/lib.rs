//! Images sent over the network: pushed to a registry through the OCI distribution API
//! ([`registry`]), or loaded into the Docker engine through its API socket ([`daemon`]).

pub mod daemon;
pub mod registry;
