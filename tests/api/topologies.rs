//! Splitting changes deployment, not behaviour: the saga's scenarios, written once against a
//! [`TestApp`](crate::helpers::TestApp), run in each topology of BRIEF.md —
//! (a) one process, SQLite files, in-process bus;
//! (b) one process, PostgreSQL, RabbitMQ;
//! (c) five processes (`users,catalog` | `orders` | `payments` | `basket` | the rest: `inventory,shipping,notifications,webhooks`) of
//!     the real binary on RabbitMQ, users on MariaDB and the rest on PostgreSQL, each reached on its
//!     own port.
//! Every order pays with the built-in fake provider, so each scenario crosses the payment step.

use crate::engines::Engine;
use crate::helpers::{Stack, TestApp};

macro_rules! in_every_topology {
    ($($name:ident => $scenario:path),* $(,)?) => {
        mod a_one_process_sqlite_in_process {
            $( #[tokio::test] async fn $name() { $scenario(&crate::helpers::spawn_app().await).await } )*
        }
        mod b_one_process_postgres_rabbitmq {
            $( #[tokio::test] async fn $name() {
                let Some(app) = super::postgres_and_rabbitmq().await else { return };
                $scenario(&app).await
            } )*
        }
        mod c_split_processes_mariadb_postgres_rabbitmq {
            $( #[tokio::test] async fn $name() {
                let Some((shop, _processes)) = crate::split::Split::start().await else { return };
                $scenario(&shop).await
            } )*
        }
    };
}

in_every_topology!(
    an_order_travels_from_pending_to_delivered => crate::shipping::happy_path,
    an_order_beyond_stock_is_rejected => crate::orders::rejection,
    a_cancel_before_dispatch_cancels_the_shipment_and_releases_the_stock => crate::shipping::cancel_before_dispatch,
    a_new_address_before_dispatch_reaches_the_shipment => crate::shipping::address_change_before_dispatch,
    fifty_concurrent_orders_for_ten_units_confirm_exactly_ten => crate::orders::fifty_orders_for_ten_units,
    a_paid_order_travels_from_pending_to_delivered => crate::payments::happy_path,
    fifty_concurrent_paid_orders_for_ten_units_charge_exactly_ten => crate::payments::fifty_paid_orders_for_ten_units,
    a_declined_card_rejects_the_order_and_releases_the_stock => crate::payments::declined,
    a_paid_order_cancelled_before_dispatch_is_refunded_and_releases_its_stock => crate::payments::refunded_on_cancel,
    a_checked_out_basket_becomes_an_order_that_is_paid_and_confirmed => crate::basket::checkout_to_confirmed,
    a_basket_flags_price_changes_and_discontinued_lines_and_checks_out_at_the_accepted_price => crate::basket::edits_and_flags_to_checkout,
    a_guest_basket_merged_at_log_in_is_checked_out_once_per_key => crate::basket::guest_merged_and_checked_out_once,
);

async fn postgres_and_rabbitmq() -> Option<TestApp> {
    Some(Stack::new(Engine::Postgres, true).await?.spawn(&[]).await)
}
