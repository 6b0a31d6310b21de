//! The shipping module's use cases. An admin's dispatch or delivery is one transaction: the
//! shipment and its event. What events drive (open, cancel) runs in the transaction the inbox
//! hands the event handler, so it commits once, together with the events it causes.

use anyhow::Context;
use kernel::{Outbox, Principal};
use orders_contracts::OrderItem;
use sea_orm::{DatabaseConnection, DatabaseTransaction};
use shipping_contracts::{ShipmentDelivered, ShipmentDispatched};
use uuid::Uuid;

use crate::domain::{
    Address, Carrier, Line, OrderId, Shipment, ShipmentEvent, ShipmentId, ShipmentStatus, TrackingNumber,
};
use crate::persistence::{self, Filter};

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

pub(crate) fn items(shipment: &Shipment) -> Vec<OrderItem> {
    shipment.lines.iter().map(|l| OrderItem { product_id: l.product_id, quantity: l.quantity }).collect()
}

/// Opens the pending shipment of a confirmed order; `None` if the order has one already (a
/// repeat, or a cancellation that came first and left a tombstone). An address change that came
/// first is taken: the shipment opens with it, and `true` says so.
#[tracing::instrument(level = "debug", skip_all, fields(order.id = %order_id))]
pub async fn open(
    txn: &DatabaseTransaction,
    order_id: OrderId,
    user_id: Uuid,
    lines: Vec<Line>,
    address: Address,
) -> anyhow::Result<Option<(Shipment, bool)>> {
    if let Some(known) = persistence::find_by_order(txn, order_id, false).await.context("failed to load a shipment")? {
        tracing::info!(shipment.status = known.status.as_str(), "the order has a shipment already; nothing opened");
        return Ok(None);
    }
    let requested =
        persistence::claim_slot(txn, order_id, &address).await.context("failed to claim an address slot")?;
    let changed = requested.is_some();
    let shipment = Shipment::open(order_id, user_id, lines, requested.unwrap_or(address), kernel::db::now());
    // A concurrent first event of this order makes this a unique violation: the transaction fails
    // and the retry finds the shipment.
    persistence::insert(txn, &shipment).await.context("failed to insert a shipment")?;
    tracing::info!(shipment.id = %shipment.id, address.changed = changed, "shipment opened");
    Ok(Some((shipment, changed)))
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

/// Changes the address of the order's shipment while it is pending. The status is checked under a
/// row lock and saved by conditional update, so of a dispatch and an address change of one
/// shipment, whichever comes first wins and the other sees it.
#[tracing::instrument(level = "debug", skip_all, fields(order.id = %order_id))]
pub async fn change_address(
    txn: &DatabaseTransaction,
    order_id: OrderId,
    address: Address,
) -> anyhow::Result<AddressOutcome> {
    let now = kernel::db::now();
    // Recorded first: an opening of the shipment in flight holds the slot, so this waits for it to
    // commit and then finds the shipment below (or the opening finds this request).
    persistence::record_request(txn, order_id, &address, now).await.context("failed to record an address change")?;
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
        tracing::info!(shipment.status = status.as_str(), "address change refused");
        return Ok(AddressOutcome::Refused(Box::new(shipment)));
    }
    anyhow::ensure!(
        persistence::update_from(txn, &shipment, from).await.context("failed to save a shipment")?,
        "shipment {} changed while it was locked",
        shipment.id
    );
    tracing::info!(shipment.id = %shipment.id, "shipment address changed");
    Ok(AddressOutcome::Changed(Box::new(shipment)))
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

/// Cancels the order's shipment unless it left the warehouse already.
#[tracing::instrument(level = "debug", skip_all, fields(order.id = %order_id))]
pub async fn cancel(
    txn: &DatabaseTransaction,
    order_id: OrderId,
    user_id: Uuid,
    reason: &str,
) -> anyhow::Result<CancelOutcome> {
    let now = kernel::db::now();
    let Some(mut shipment) =
        persistence::find_by_order(txn, order_id, true).await.context("failed to load a shipment")?
    else {
        let tombstone = Shipment::tombstone(order_id, user_id, reason, now);
        persistence::insert(txn, &tombstone).await.context("failed to record a cancellation")?;
        // An address change that came first has nothing left to change.
        persistence::drop_request(txn, order_id).await.context("failed to drop an address change")?;
        tracing::info!(shipment.id = %tombstone.id, "order cancelled before its shipment was opened");
        return Ok(CancelOutcome::Cancelled(Box::new(tombstone)));
    };
    let from = shipment.status;
    match shipment.cancel(reason, now) {
        Ok(()) => {}
        Err(_) if from == ShipmentStatus::Cancelled => return Ok(CancelOutcome::AlreadyCancelled),
        Err(e) => {
            tracing::info!(reason = %e, "cancellation refused");
            return Ok(CancelOutcome::Refused(from));
        }
    }
    anyhow::ensure!(
        persistence::update_from(txn, &shipment, from).await.context("failed to save a shipment")?,
        "shipment {} changed while it was locked",
        shipment.id
    );
    tracing::info!(shipment.id = %shipment.id, "shipment cancelled");
    Ok(CancelOutcome::Cancelled(Box::new(shipment)))
}

/// The pending shipment of an order that ended is cancelled; any other is left as it is.
#[tracing::instrument(level = "debug", skip_all, fields(order.id = %order_id))]
pub async fn cancel_pending(
    txn: &DatabaseTransaction,
    order_id: OrderId,
    reason: &str,
) -> anyhow::Result<Option<Shipment>> {
    let Some(mut shipment) =
        persistence::find_by_order(txn, order_id, true).await.context("failed to load a shipment")?
    else {
        return Ok(None);
    };
    let from = shipment.status;
    if let Err(e) = shipment.cancel(reason, kernel::db::now()) {
        tracing::debug!(reason = %e, "nothing to cancel");
        return Ok(None);
    }
    anyhow::ensure!(
        persistence::update_from(txn, &shipment, from).await.context("failed to save a shipment")?,
        "shipment {} changed while it was locked",
        shipment.id
    );
    tracing::info!(shipment.id = %shipment.id, "shipment of an ended order cancelled");
    Ok(Some(shipment))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use migrations::MigratorTrait;

    /// A migrated SQLite database in a folder of its own; keep the folder alive while using it.
    pub(crate) async fn database() -> (tempfile::TempDir, DatabaseConnection) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}/shipping.db?mode=rwc", dir.path().display());
        let db = kernel::db::connect(&url, 5).await.expect("a database");
        migrations::Migrator::up(&db, None).await.expect("migrated");
        (dir, db)
    }
}
