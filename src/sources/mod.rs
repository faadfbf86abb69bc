//! Where readings come from: files now; MQTT and Kafka with the daemon.

pub mod file;
