//! The shipping module's use cases. An admin's dispatch or delivery is one transaction: the
//! shipment and its event. What events trigger (opening a shipment, cancelling it, changing its
//! address) runs in the transaction the inbox hands the event handler, so it commits once,
//! together with the events it publishes.
//!
//! Races, decided: shipping is the authority over cancelling a confirmed order. A customer's
//! `OrderCancellationRequested` cancels the pending shipment (`ShipmentCancelled`, on which orders
//! cancels the order and inventory releases its stock); if the request overtook `OrderConfirmed`,
//! a cancelled tombstone takes the shipment's place, so the late confirmation opens nothing; if
//! the shipment was dispatched first, the request is refused and the `ShipmentDispatched` already
//! sent ships the order. The status moves by conditional update under a row lock, so a dispatch
//! and a cancellation of one shipment never both succeed.
//!
//! Likewise shipping is the authority over a confirmed order's address. `OrderAddressChangeRequested`
//! changes a pending shipment's address (`ShipmentAddressChanged`, on which orders takes it) and is
//! refused by any other (`ShipmentAddressChangeRefused`, on which orders keeps the old one); a dispatch
//! and an address change of one shipment are ordered by its row lock, so the parcel always leaves
//! with the address orders ends up showing. A request that overtook `OrderConfirmed` is recorded,
//! and the shipment opens with it: `ShipmentCreated` carries that address and `ShipmentAddressChanged`
//! follows, as if the request had come second.

use anyhow::Context;
use kernel::{Envelope, Outbox, Principal};
use orders_contracts::OrderItem;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use shipping_contracts::{
    ShipmentAddressChangeRefused, ShipmentAddressChanged, ShipmentCancelled, ShipmentCreated, ShipmentDelivered,
    ShipmentDispatched,
};
use uuid::Uuid;

use crate::domain::{
    Address, Carrier, Line, OrderId, Shipment, ShipmentEvent, ShipmentId, ShipmentStatus, TrackingNumber,
};
use crate::persistence::{self, Filter};

/// The reasons a shipment is cancelled, as `ShipmentCancelled` gives them.
pub const CANCELLED_BY_CUSTOMER: &str = "the customer cancelled the order";
pub const ORDER_ENDED: &str = "the order was cancelled";

#[derive(Clone)]
pub struct Shipments {
    db: DatabaseConnection,
    outbox: Outbox<shipping_contracts::Shipping>,
}

/// A validated request to dispatch a shipment.
#[derive(Debug, Clone)]
pub struct Dispatch {
    pub carrier: Carrier,
    pub tracking_number: TrackingNumber,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeShipmentError {
    #[error("no shipment {0}")]
    NotFound(ShipmentId),
    #[error("the shipment is {}", .0.as_str())]
    WrongState(ShipmentStatus),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Shipments {
    pub fn new(db: DatabaseConnection, outbox: Outbox) -> Self {
        Self { db, outbox: outbox.bind() }
    }

    /// The shipment, if `who` may see it: its order's owner or an admin. Anyone else is told it
    /// does not exist.
    pub async fn get(&self, id: ShipmentId, who: &Principal) -> anyhow::Result<Option<Shipment>> {
        let shipment = persistence::find(&self.db, id, false).await.context("failed to load a shipment")?;
        Ok(shipment.filter(|s| who.is_admin() || s.user_id == who.user_id))
    }

    /// `who`'s shipments, or everyone's for an admin.
    pub async fn list(
        &self,
        who: &Principal,
        order_id: Option<OrderId>,
        status: Option<ShipmentStatus>,
        after: Option<ShipmentId>,
        limit: u64,
    ) -> anyhow::Result<Vec<Shipment>> {
        let filter = Filter { user_id: (!who.is_admin()).then_some(who.user_id), order_id, status };
        persistence::list(&self.db, filter, after, limit).await.context("failed to list shipments")
    }

    /// Hands a pending shipment to the carrier: `ShipmentDispatched` ships the order and takes
    /// its reserved units out of stock. A cancelled shipment is never dispatched.
    #[tracing::instrument(level = "debug", skip_all, fields(shipment.id = %id))]
    pub async fn dispatch(&self, id: ShipmentId, request: Dispatch) -> Result<Shipment, ChangeShipmentError> {
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let mut shipment = load(&txn, id).await?;
        let from = shipment.status;
        shipment
            .dispatch(request.carrier, request.tracking_number, kernel::db::now())
            .map_err(|e| ChangeShipmentError::WrongState(e.from))?;
        save(&txn, &shipment, from).await?;
        let event = ShipmentDispatched {
            shipment_id: id.as_uuid(),
            order_id: shipment.order_id.as_uuid(),
            items: items(&shipment),
            carrier: shipment.carrier.as_ref().map(|c| c.as_str().to_owned()).unwrap_or_default(),
            tracking_number: shipment.tracking_number.as_ref().map(|t| t.as_str().to_owned()).unwrap_or_default(),
        };
        self.outbox.publish(&txn, &event, None).await?;
        self.outbox.commit(txn).await.context("failed to commit a dispatch")?;
        tracing::info!(order.id = %shipment.order_id, "shipment dispatched");
        Ok(shipment)
    }

    /// Records that a dispatched parcel arrived: `ShipmentDelivered`.
    #[tracing::instrument(level = "debug", skip_all, fields(shipment.id = %id))]
    pub async fn deliver(&self, id: ShipmentId) -> Result<Shipment, ChangeShipmentError> {
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let mut shipment = load(&txn, id).await?;
        let from = shipment.status;
        shipment
            .apply(ShipmentEvent::Deliver, kernel::db::now())
            .map_err(|e| ChangeShipmentError::WrongState(e.from))?;
        save(&txn, &shipment, from).await?;
        let event = ShipmentDelivered { shipment_id: id.as_uuid(), order_id: shipment.order_id.as_uuid() };
        self.outbox.publish(&txn, &event, None).await?;
        self.outbox.commit(txn).await.context("failed to commit a delivery")?;
        tracing::info!(order.id = %shipment.order_id, "shipment delivered");
        Ok(shipment)
    }
}

async fn load(txn: &DatabaseTransaction, id: ShipmentId) -> Result<Shipment, ChangeShipmentError> {
    persistence::find(txn, id, true)
        .await
        .context("failed to load a shipment")?
        .ok_or(ChangeShipmentError::NotFound(id))
}

/// Saves a change the lock made safe; should the status have moved all the same, the request
/// loses, as if it had come second.
async fn save(txn: &DatabaseTransaction, shipment: &Shipment, from: ShipmentStatus) -> Result<(), ChangeShipmentError> {
    if persistence::update_from(txn, shipment, from).await.context("failed to save a shipment")? {
        return Ok(());
    }
    let now = persistence::find(txn, shipment.id, false).await.context("failed to load a shipment")?;
    Err(ChangeShipmentError::WrongState(now.map_or(from, |s| s.status)))
}

/// What shipping made of a customer's request to change the address of a confirmed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressOutcome {
    /// The pending shipment goes to the new address.
    Changed(Box<Shipment>),
    /// Dispatched, delivered or cancelled: the parcel goes where it was going, or nowhere.
    Refused(Box<Shipment>),
    /// The shipment has that address already: a repeat, nothing to do.
    Unchanged,
    /// No shipment yet: it will open with this address.
    Recorded,
}

/// What shipping made of a customer's request to cancel a confirmed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The pending shipment is cancelled, or, if none was open yet, a cancelled tombstone stands in
    /// for it: either way the order will never ship.
    Cancelled(Box<Shipment>),
    /// Already cancelled: nothing more to do.
    AlreadyCancelled,
    /// Dispatched (or delivered) first: the parcel is on its way; `ShipmentDispatched` ships the order.
    Refused(ShipmentStatus),
}

/// The use cases events trigger: each writes its effect, and the events it publishes, through the
/// transaction the inbox hands it, with the event that caused it as their cause.
impl Shipments {
    /// Opens the pending shipment of a confirmed order: `ShipmentCreated`. `None` if the order has
    /// one already (a repeat, or a cancellation that came first and left a tombstone): nothing is
    /// opened nor published. An address change that came first is taken: the shipment opens with
    /// it, and `ShipmentAddressChanged` follows, the answer orders is waiting for.
    #[tracing::instrument(skip_all, fields(order.id = %order_id))]
    pub async fn open(
        &self,
        txn: &DatabaseTransaction,
        order_id: OrderId,
        user_id: Uuid,
        lines: Vec<Line>,
        address: Address,
        cause: &Envelope,
    ) -> anyhow::Result<Option<Shipment>> {
        if let Some(known) =
            persistence::find_by_order(txn, order_id, false).await.context("failed to load a shipment")?
        {
            tracing::info!(shipment.status = known.status.as_str(), "the order has a shipment already; nothing opened");
            return Ok(None);
        }
        let requested =
            persistence::claim_slot(txn, order_id, &address).await.context("failed to claim an address slot")?;
        let changed = requested.is_some();
        let shipment = Shipment::open(order_id, user_id, lines, requested.unwrap_or(address), kernel::db::now());
        // A concurrent first event of this order makes this a unique violation: the transaction
        // fails and the retry finds the shipment.
        persistence::insert(txn, &shipment).await.context("failed to insert a shipment")?;
        let created = ShipmentCreated {
            shipment_id: shipment.id.as_uuid(),
            order_id: order_id.as_uuid(),
            user_id,
            items: items(&shipment),
            shipping_address: shipped_to(&shipment)?,
        };
        self.outbox.publish(txn, &created, Some(cause)).await?;
        if changed {
            self.address_changed(txn, &shipment, cause).await?;
        }
        tracing::info!(shipment.id = %shipment.id, address.changed = changed, "shipment opened");
        Ok(Some(shipment))
    }

    /// Changes the address of the order's shipment while it is pending (`ShipmentAddressChanged`)
    /// and refuses to once it is not (`ShipmentAddressChangeRefused`); with no shipment yet, the
    /// request is recorded for the one to come. The status is checked under a row lock and saved by
    /// conditional update, so of a dispatch and an address change of one shipment, whichever comes
    /// first wins and the other sees it.
    #[tracing::instrument(skip_all, fields(order.id = %order_id))]
    pub async fn change_address(
        &self,
        txn: &DatabaseTransaction,
        order_id: OrderId,
        address: Address,
        cause: &Envelope,
    ) -> anyhow::Result<AddressOutcome> {
        let now = kernel::db::now();
        // Recorded first: an opening of the shipment in flight holds the slot, so this waits for it
        // to commit and then finds the shipment below (or the opening finds this request).
        persistence::record_request(txn, order_id, &address, now)
            .await
            .context("failed to record an address change")?;
        let Some(mut shipment) =
            persistence::find_by_order(txn, order_id, true).await.context("failed to load a shipment")?
        else {
            tracing::info!("address change recorded for the shipment to come");
            return Ok(AddressOutcome::Recorded);
        };
        persistence::drop_request(txn, order_id).await.context("failed to drop an address change")?;
        if shipment.address.as_ref() == Some(&address) {
            return Ok(AddressOutcome::Unchanged);
        }
        let from = shipment.status;
        if let Err(status) = shipment.change_address(address, now) {
            let refused = ShipmentAddressChangeRefused {
                shipment_id: shipment.id.as_uuid(),
                order_id: order_id.as_uuid(),
                reason: format!("the shipment is {}", status.as_str()),
            };
            self.outbox.publish(txn, &refused, Some(cause)).await?;
            tracing::info!(shipment.status = status.as_str(), "address change refused");
            return Ok(AddressOutcome::Refused(Box::new(shipment)));
        }
        anyhow::ensure!(
            persistence::update_from(txn, &shipment, from).await.context("failed to save a shipment")?,
            "shipment {} changed while it was locked",
            shipment.id
        );
        self.address_changed(txn, &shipment, cause).await?;
        tracing::info!(shipment.id = %shipment.id, "shipment address changed");
        Ok(AddressOutcome::Changed(Box::new(shipment)))
    }

    /// Cancels the order's shipment at its customer's request (`ShipmentCancelled`), unless it left
    /// the warehouse already. With no shipment yet, a cancelled tombstone takes its place.
    #[tracing::instrument(skip_all, fields(order.id = %order_id))]
    pub async fn cancel(
        &self,
        txn: &DatabaseTransaction,
        order_id: OrderId,
        user_id: Uuid,
        cause: &Envelope,
    ) -> anyhow::Result<CancelOutcome> {
        let now = kernel::db::now();
        let Some(mut shipment) =
            persistence::find_by_order(txn, order_id, true).await.context("failed to load a shipment")?
        else {
            let tombstone = Shipment::tombstone(order_id, user_id, CANCELLED_BY_CUSTOMER, now);
            persistence::insert(txn, &tombstone).await.context("failed to record a cancellation")?;
            // An address change that came first has nothing left to change.
            persistence::drop_request(txn, order_id).await.context("failed to drop an address change")?;
            self.cancelled(txn, &tombstone, cause).await?;
            tracing::info!(shipment.id = %tombstone.id, "order cancelled before its shipment was opened");
            return Ok(CancelOutcome::Cancelled(Box::new(tombstone)));
        };
        let from = shipment.status;
        match shipment.cancel(CANCELLED_BY_CUSTOMER, now) {
            Ok(()) => {}
            Err(_) if from == ShipmentStatus::Cancelled => return Ok(CancelOutcome::AlreadyCancelled),
            Err(e) => {
                tracing::info!(shipment.status = from.as_str(), reason = %e, "too late to cancel: the order ships");
                return Ok(CancelOutcome::Refused(from));
            }
        }
        anyhow::ensure!(
            persistence::update_from(txn, &shipment, from).await.context("failed to save a shipment")?,
            "shipment {} changed while it was locked",
            shipment.id
        );
        self.cancelled(txn, &shipment, cause).await?;
        tracing::info!(shipment.id = %shipment.id, "shipment cancelled");
        Ok(CancelOutcome::Cancelled(Box::new(shipment)))
    }

    /// Cancels the pending shipment of an order that ended (`ShipmentCancelled`); any other is left
    /// as it is, and an order with none gets no tombstone (orders never confirms it after this).
    #[tracing::instrument(skip_all, fields(order.id = %order_id))]
    pub async fn cancel_pending(
        &self,
        txn: &DatabaseTransaction,
        order_id: OrderId,
        cause: &Envelope,
    ) -> anyhow::Result<Option<Shipment>> {
        let Some(mut shipment) =
            persistence::find_by_order(txn, order_id, true).await.context("failed to load a shipment")?
        else {
            return Ok(None);
        };
        let from = shipment.status;
        if let Err(e) = shipment.cancel(ORDER_ENDED, kernel::db::now()) {
            tracing::debug!(reason = %e, "nothing to cancel");
            return Ok(None);
        }
        anyhow::ensure!(
            persistence::update_from(txn, &shipment, from).await.context("failed to save a shipment")?,
            "shipment {} changed while it was locked",
            shipment.id
        );
        self.cancelled(txn, &shipment, cause).await?;
        tracing::info!(shipment.id = %shipment.id, "shipment of an ended order cancelled");
        Ok(Some(shipment))
    }

    async fn address_changed(&self, txn: &DatabaseTransaction, s: &Shipment, cause: &Envelope) -> anyhow::Result<()> {
        let event = ShipmentAddressChanged {
            shipment_id: s.id.as_uuid(),
            order_id: s.order_id.as_uuid(),
            shipping_address: shipped_to(s)?,
        };
        self.outbox.publish(txn, &event, Some(cause)).await
    }

    async fn cancelled(&self, txn: &DatabaseTransaction, s: &Shipment, cause: &Envelope) -> anyhow::Result<()> {
        debug_assert_eq!(s.status, ShipmentStatus::Cancelled);
        let event = ShipmentCancelled {
            shipment_id: s.id.as_uuid(),
            order_id: s.order_id.as_uuid(),
            reason: s.cancellation_reason.clone().unwrap_or_default(),
        };
        self.outbox.publish(txn, &event, Some(cause)).await
    }
}

fn items(shipment: &Shipment) -> Vec<OrderItem> {
    shipment.lines.iter().map(|l| OrderItem { product_id: l.product_id, quantity: l.quantity }).collect()
}

/// The address of an open shipment (only a tombstone has none).
fn shipped_to(s: &Shipment) -> anyhow::Result<Address> {
    s.address.clone().ok_or_else(|| anyhow::anyhow!("shipment {} has no address", s.id))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kernel::Module;
    use kernel::testing::TestDatabase;

    /// The kit's fresh database, with shipping's tables.
    pub(crate) async fn migrated(database: &TestDatabase) -> DatabaseConnection {
        let db = database.connect(crate::NAME).await;
        crate::ShippingModule.migrate(&db).await.expect("migrated");
        db
    }

    /// The use cases on `db`, publishing through the module's outbox there.
    pub(crate) fn shipments(db: &DatabaseConnection) -> Shipments {
        Shipments::new(db.clone(), Outbox::new(crate::NAME, db.clone()))
    }
}
