//! Wire types, one module per API. Servers and clients import the same
//! structs, so no JSON shape is written twice. Every route lives under `/v1/`.

pub mod datanode;
pub mod edge;
pub mod heartbeat;
pub mod keys;
pub mod lifecycle;
pub mod multipart;
pub mod namenode;
