//! Black-box tests of the whole binary: one test executable, one file per area.

mod architecture;
mod basket;
mod broker;
mod bursts;
mod bus;
mod catalog;
mod cli;
mod engines;
mod errors;
mod helpers;
mod jobs;
mod lifecycle;
mod localstripe;
mod operations;
mod orders;
mod outage;
mod payments;
mod process;
mod product_copies;
mod rabbitmq;
mod reports;
mod scaffold;
mod shipping;
mod split;
mod topologies;
mod users;
