//! The module registry: every bounded context this binary can host.

use std::sync::Arc;

use kernel::Module;

/// Every module, in start-up order.
pub fn all() -> Vec<Arc<dyn Module>> {
    vec![
        Arc::new(users::UsersModule),
        Arc::new(catalog::CatalogModule),
        Arc::new(inventory::InventoryModule),
        Arc::new(orders::OrdersModule),
    ]
}

pub fn names() -> impl Iterator<Item = &'static str> {
    all().into_iter().map(|m| m.name())
}

/// The modules named in `enabled`, in registry order. Names are validated with the settings.
pub fn select(enabled: &[String]) -> Vec<Arc<dyn Module>> {
    all().into_iter().filter(|m| enabled.iter().any(|e| e == m.name())).collect()
}
