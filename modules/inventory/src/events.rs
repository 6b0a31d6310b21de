//! The events the inventory consumes: each is decoded, its fields mapped to the arguments of its
//! use case in `service.rs`, and handed over with the transaction the inbox commits together with
//! the record that the event was handled.

use async_trait::async_trait;
use catalog_contracts::ProductCreated;
use kernel::{Envelope, EventRoutes, HandlerError, Handles};
use orders_contracts::{OrderCancelled, OrderCreated};
use sea_orm::DatabaseTransaction;
use shipping_contracts::ShipmentDispatched;

use crate::domain::{Lines, OrderId, ProductId};
use crate::service::Inventory;

/// What the inventory consumes, and who handles each: its `consumes()` and its event handler.
pub fn routes() -> EventRoutes<InventoryEvents> {
    EventRoutes::new().on::<ProductCreated>().on::<OrderCreated>().on::<OrderCancelled>().on::<ShipmentDispatched>()
}

pub struct InventoryEvents {
    inventory: Inventory,
}

impl InventoryEvents {
    pub fn new(inventory: Inventory) -> Self {
        Self { inventory }
    }
}

#[async_trait]
impl Handles<ProductCreated> for InventoryEvents {
    async fn handle(&self, txn: &DatabaseTransaction, event: ProductCreated, _: &Envelope) -> Result<(), HandlerError> {
        Ok(self.inventory.track_product(txn, ProductId::from(event.0.product_id)).await?)
    }
}

#[async_trait]
impl Handles<OrderCreated> for InventoryEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: OrderCreated,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        let lines = Lines::sum(event.items.iter().map(|i| (ProductId::from(i.product_id), i.quantity)))
            .map_err(HandlerError::Malformed)?;
        self.inventory.reserve(txn, OrderId::from(event.order_id), lines, cause).await?;
        Ok(())
    }
}

/// The items the event carries are not used: what is released is what was reserved.
#[async_trait]
impl Handles<OrderCancelled> for InventoryEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: OrderCancelled,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        self.inventory.release(txn, OrderId::from(event.order_id), cause).await?;
        Ok(())
    }
}

#[async_trait]
impl Handles<ShipmentDispatched> for InventoryEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: ShipmentDispatched,
        _: &Envelope,
    ) -> Result<(), HandlerError> {
        self.inventory.sell(txn, OrderId::from(event.order_id)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use catalog_contracts::ProductSnapshot;
    use contracts::{Currency, IntegrationEvent, Money, ProductStatus, Quantity};
    use inventory_contracts::{Shortage, StockReleased, StockReservationFailed, StockReserved};
    use kernel::EventHandler;
    use kernel::testing::{Engine, TestDatabase, published, published_of};
    use orders_contracts::OrderItem;
    use sea_orm::DatabaseConnection;
    use std::sync::Arc;
    use uuid::Uuid;

    use crate::NAME;
    use crate::service::tests::{inventory, migrated, stocked};

    /// The module's event handler, as the inbox calls it.
    fn handler(db: &DatabaseConnection) -> Arc<dyn EventHandler> {
        routes().bind(InventoryEvents::new(inventory(db)))
    }

    /// Handles `event` in a transaction of its own, as the inbox would, and returns its envelope.
    async fn deliver<E: IntegrationEvent>(db: &DatabaseConnection, event: &E) -> Envelope {
        let envelope = Envelope::new(event).expect("serialises");
        let txn = kernel::db::begin_write(db).await.expect("a transaction");
        handler(db).handle(&txn, &envelope).await.expect("handled");
        txn.commit().await.expect("committed");
        envelope
    }

    async fn stock(db: &DatabaseConnection, product: ProductId) -> (i64, i64) {
        let stock = inventory(db).get(product).await.expect("loaded").expect("a stock row");
        (stock.on_hand, stock.reserved)
    }

    fn q(units: u32) -> Quantity {
        Quantity::new(units).expect("valid")
    }

    fn order_created(order_id: Uuid, items: &[(ProductId, u32)]) -> OrderCreated {
        OrderCreated {
            order_id,
            user_id: Uuid::now_v7(),
            items: items
                .iter()
                .map(|(p, quantity)| OrderItem { product_id: p.as_uuid(), quantity: q(*quantity) })
                .collect(),
        }
    }

    fn order_cancelled(order_id: Uuid) -> OrderCancelled {
        OrderCancelled { order_id, user_id: Uuid::now_v7(), items: Vec::new() }
    }

    fn dispatched(order_id: Uuid) -> ShipmentDispatched {
        ShipmentDispatched {
            shipment_id: Uuid::now_v7(),
            order_id,
            items: Vec::new(),
            carrier: "DHL".into(),
            tracking_number: "T-1".into(),
        }
    }

    #[tokio::test]
    async fn a_created_product_gets_an_empty_stock_row_and_a_repeat_leaves_it_alone() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let product_id = Uuid::now_v7();
        let created = ProductCreated(ProductSnapshot {
            product_id,
            sku: "MUG-1".into(),
            name: "Mug".into(),
            description: String::new(),
            price: Money::new(1299, Currency::parse("EUR").expect("valid")).expect("valid"),
            status: ProductStatus::Active,
            version: 1,
        });
        deliver(&db, &created).await;
        let product = ProductId::from(product_id);
        assert_eq!(stock(&db, product).await, (0, 0));
        let on_hand = crate::domain::OnHand::try_from(4).expect("valid");
        inventory(&db).set_on_hand(product, on_hand).await.expect("set");
        deliver(&db, &created).await;
        assert_eq!(stock(&db, product).await, (4, 0));
    }

    #[tokio::test]
    async fn a_reserved_order_publishes_its_summed_items_caused_by_the_order() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let product = stocked(&db, 5).await;
        let order_id = Uuid::now_v7();
        let cause = deliver(&db, &order_created(order_id, &[(product, 2), (product, 1)])).await;
        assert_eq!(stock(&db, product).await, (5, 3));
        let events = published(&db, NAME).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].causation_id, Some(cause.id));
        assert_eq!(events[0].correlation_id, cause.correlation_id);
        let reserved = events[0].decode::<StockReserved>().expect("StockReserved");
        assert_eq!(reserved.order_id, order_id);
        assert_eq!(reserved.items, [OrderItem { product_id: product.as_uuid(), quantity: q(3) }]);
    }

    #[tokio::test]
    async fn a_short_line_rejects_the_whole_order_and_names_each_shortage() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let (plenty, scarce) = (stocked(&db, 10).await, stocked(&db, 1).await);
        let unknown = ProductId::from(Uuid::now_v7());
        let order_id = Uuid::now_v7();
        deliver(&db, &order_created(order_id, &[(plenty, 2), (scarce, 2), (unknown, 1)])).await;
        assert_eq!(stock(&db, plenty).await, (10, 0), "the line that fitted is not held either");
        assert_eq!(stock(&db, scarce).await, (1, 0));
        let events = published(&db, NAME).await;
        let failed = events[0].decode::<StockReservationFailed>().expect("StockReservationFailed");
        assert_eq!(failed.order_id, order_id);
        let mut shortages = failed.shortages;
        shortages.sort_by_key(|s| s.product_id);
        let mut expected = vec![
            Shortage { product_id: scarce.as_uuid(), requested: 2, available: 1 },
            Shortage { product_id: unknown.as_uuid(), requested: 1, available: 0 },
        ];
        expected.sort_by_key(|s| s.product_id);
        assert_eq!(shortages, expected);
        // A repeat of the order (a new envelope, the same order) changes nothing.
        deliver(&db, &order_created(order_id, &[(plenty, 2)])).await;
        assert_eq!(stock(&db, plenty).await, (10, 0));
        assert_eq!(published(&db, NAME).await.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn orders_racing_for_the_last_units_never_reserve_more_than_there_is() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let product = stocked(&db, 5).await;
        let mut racers = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let db = db.clone();
            racers.spawn(async move {
                let envelope = Envelope::new(&order_created(Uuid::now_v7(), &[(product, 1)])).expect("serialises");
                let txn = kernel::db::begin_write(&db).await.expect("a transaction");
                handler(&db).handle(&txn, &envelope).await.expect("handled");
                txn.commit().await.expect("committed");
            });
        }
        while let Some(result) = racers.join_next().await {
            result.expect("no panic");
        }
        assert_eq!(stock(&db, product).await, (5, 5));
        assert_eq!(published_of::<StockReserved>(&db, NAME).await.len(), 5);
        assert_eq!(published_of::<StockReservationFailed>(&db, NAME).await.len(), 15);
    }

    #[tokio::test]
    async fn releasing_twice_has_one_effect() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let product = stocked(&db, 5).await;
        let order_id = Uuid::now_v7();
        deliver(&db, &order_created(order_id, &[(product, 3)])).await;
        deliver(&db, &order_cancelled(order_id)).await;
        assert_eq!(stock(&db, product).await, (5, 0));
        deliver(&db, &order_cancelled(order_id)).await;
        assert_eq!(stock(&db, product).await, (5, 0));
        let released = published_of::<StockReleased>(&db, NAME).await;
        assert_eq!(released.len(), 1);
        assert_eq!(released[0].items, [OrderItem { product_id: product.as_uuid(), quantity: q(3) }]);
    }

    #[tokio::test]
    async fn an_order_cancelled_before_it_is_seen_reserves_nothing_later() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let product = stocked(&db, 5).await;
        let order_id = Uuid::now_v7();
        deliver(&db, &order_cancelled(order_id)).await;
        deliver(&db, &order_created(order_id, &[(product, 2)])).await;
        assert_eq!(stock(&db, product).await, (5, 0));
        assert!(published(&db, NAME).await.is_empty());
    }

    #[tokio::test]
    async fn a_dispatched_order_turns_its_reservation_into_units_sold_once() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let product = stocked(&db, 5).await;
        let order_id = Uuid::now_v7();
        deliver(&db, &order_created(order_id, &[(product, 2)])).await;
        deliver(&db, &dispatched(order_id)).await;
        assert_eq!(stock(&db, product).await, (3, 0));
        deliver(&db, &dispatched(order_id)).await;
        deliver(&db, &order_cancelled(order_id)).await;
        assert_eq!(stock(&db, product).await, (3, 0), "sold units are neither sold nor released again");
        assert_eq!(published(&db, NAME).await.len(), 1, "only StockReserved");
        // A rejected order has nothing to sell.
        let rejected = Uuid::now_v7();
        deliver(&db, &order_created(rejected, &[(product, 9)])).await;
        deliver(&db, &dispatched(rejected)).await;
        assert_eq!(stock(&db, product).await, (3, 0));
    }

    #[tokio::test]
    async fn an_event_the_module_does_not_consume_is_malformed() {
        let database = TestDatabase::fresh(Engine::Sqlite).await.expect("SQLite needs no server");
        let db = migrated(&database).await;
        let envelope = Envelope::new(&StockReleased { order_id: Uuid::now_v7(), items: Vec::new() }).expect("JSON");
        let txn = kernel::db::begin_write(&db).await.expect("a transaction");
        let result = handler(&db).handle(&txn, &envelope).await;
        assert!(matches!(result, Err(HandlerError::Malformed(_))), "{result:?}");
    }
}
