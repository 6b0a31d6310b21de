//! The events the payments module consumes: each is decoded by the kernel and handed to a use case
//! of `service.rs`; nothing else happens here.

use actix_web::web;
use async_trait::async_trait;
use kernel::{Envelope, EventRoutes, HandlerError, Handles};
use sea_orm::DatabaseTransaction;
use users_contracts::UserRegistered;

use crate::service::Payments;

pub struct PaymentsEvents(pub web::Data<Payments>);

/// What the module consumes: its `consumes()` and its dispatch, in one list.
pub fn routes() -> EventRoutes<PaymentsEvents> {
    EventRoutes::new().on::<UserRegistered>()
}

#[async_trait]
impl Handles<UserRegistered> for PaymentsEvents {
    async fn handle(
        &self,
        txn: &DatabaseTransaction,
        event: UserRegistered,
        cause: &Envelope,
    ) -> Result<(), HandlerError> {
        Ok(self.0.note_registration(txn, event.user_id, cause).await?)
    }
}
