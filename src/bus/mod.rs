//! The bus adapters behind `kernel::EventBus`, chosen by `bus.kind`.

pub mod in_process;
pub mod rabbitmq;

pub use in_process::InProcessBus;
pub use rabbitmq::{RabbitMqBus, RabbitMqConfig, Topology};
