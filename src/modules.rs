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
        Arc::new(shipping::ShippingModule),
    ]
}

/// Every module of the registry and the events it consumes: a broker's queues and bindings.
pub fn subscriptions() -> Vec<(String, Vec<contracts::EventType>)> {
    all().iter().map(|m| (m.name().to_owned(), m.consumes())).collect()
}

pub fn names() -> impl Iterator<Item = &'static str> {
    all().into_iter().map(|m| m.name())
}

/// The modules named in `enabled`, in registry order. Names are validated with the settings.
pub fn select(enabled: &[String]) -> Vec<Arc<dyn Module>> {
    all().into_iter().filter(|m| enabled.iter().any(|e| e == m.name())).collect()
}

/// What a module is, for an operator planning a split: `bazaar modules`.
#[derive(Debug, serde::Serialize)]
pub struct Description {
    pub name: &'static str,
    /// `<source>.<event>.v<version>`.
    pub publishes: Vec<String>,
    pub consumes: Vec<String>,
    /// `METHOD /path`.
    pub routes: Vec<String>,
}

/// Every module of the registry, described from the modules themselves.
pub fn describe() -> Vec<Description> {
    all()
        .iter()
        .map(|m| {
            let mut routes = Vec::new();
            for (path, item) in &m.openapi().paths.paths {
                let methods = [
                    ("GET", &item.get),
                    ("POST", &item.post),
                    ("PUT", &item.put),
                    ("PATCH", &item.patch),
                    ("DELETE", &item.delete),
                ];
                routes.extend(
                    methods.iter().filter(|(_, op)| op.is_some()).map(|(method, _)| format!("{method} {path}")),
                );
            }
            Description {
                name: m.name(),
                publishes: m.publishes().iter().map(ToString::to_string).collect(),
                consumes: m.consumes().iter().map(ToString::to_string).collect(),
                routes,
            }
        })
        .collect()
}

/// The registry as text, a block per module.
pub fn render(modules: &[Description]) -> String {
    let mut out = String::new();
    for m in modules {
        let list = |items: &[String]| if items.is_empty() { "-".to_owned() } else { items.join(", ") };
        out += &format!(
            "{}\n  publishes: {}\n  consumes:  {}\n  routes:\n",
            m.name,
            list(&m.publishes),
            list(&m.consumes)
        );
        for route in &m.routes {
            out += &format!("    {route}\n");
        }
    }
    out
}
