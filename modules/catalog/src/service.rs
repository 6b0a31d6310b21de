//! The catalog's use cases. Each write is one transaction: the product row, its new version and
//! its event; the row is locked meanwhile, so versions never repeat.

use anyhow::Context;
use catalog_contracts::{ProductCreated, ProductDiscontinued, ProductSnapshot, ProductUpdated};
use kernel::Outbox;
use sea_orm::DatabaseConnection;

use crate::domain::{Product, ProductDetails, ProductId};
use crate::persistence::{self, ProductFilter};

#[derive(Clone)]
pub struct Catalog {
    db: DatabaseConnection,
    outbox: Outbox<catalog_contracts::Catalog>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateProductError {
    #[error("a product with sku {0} exists already")]
    DuplicateSku(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateProductError {
    #[error("no product {0}")]
    NotFound(ProductId),
    #[error("a product with sku {0} exists already")]
    DuplicateSku(String),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

#[derive(Debug, thiserror::Error)]
pub enum DiscontinueProductError {
    #[error("no product {0}")]
    NotFound(ProductId),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl Catalog {
    pub fn new(db: DatabaseConnection, outbox: Outbox) -> Self {
        Self { db, outbox: outbox.bind() }
    }

    #[tracing::instrument(level = "debug", skip_all, fields(product.sku = %details.sku.as_str()))]
    pub async fn create(&self, details: ProductDetails) -> Result<Product, CreateProductError> {
        let product = Product::new(details, kernel::db::now());
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        if let Err(e) = persistence::insert(&txn, &product).await {
            return Err(match kernel::db::is_unique_violation(&e) {
                true => CreateProductError::DuplicateSku(product.details.sku.as_str().to_owned()),
                false => anyhow::Error::new(e).context("failed to insert a product").into(),
            });
        }
        self.outbox.publish(&txn, &ProductCreated(snapshot(&product)), None).await?;
        self.outbox.commit(txn).await.context("failed to commit a new product")?;
        tracing::info!(product.id = %product.id, "product created");
        Ok(product)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(product.id = %id))]
    pub async fn update(&self, id: ProductId, details: ProductDetails) -> Result<Product, UpdateProductError> {
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let mut product = persistence::find_for_update(&txn, id)
            .await
            .context("failed to load a product")?
            .ok_or(UpdateProductError::NotFound(id))?;
        product.revise(details, kernel::db::now());
        if let Err(e) = persistence::update(&txn, &product).await {
            return Err(match kernel::db::is_unique_violation(&e) {
                true => UpdateProductError::DuplicateSku(product.details.sku.as_str().to_owned()),
                false => anyhow::Error::new(e).context("failed to update a product").into(),
            });
        }
        self.outbox.publish(&txn, &ProductUpdated(snapshot(&product)), None).await?;
        self.outbox.commit(txn).await.context("failed to commit a product update")?;
        Ok(product)
    }

    /// Marks the product discontinued; doing it again changes nothing and publishes nothing.
    #[tracing::instrument(level = "debug", skip_all, fields(product.id = %id))]
    pub async fn discontinue(&self, id: ProductId) -> Result<(), DiscontinueProductError> {
        let txn = kernel::db::begin_write(&self.db).await.context("failed to begin a transaction")?;
        let mut product = persistence::find_for_update(&txn, id)
            .await
            .context("failed to load a product")?
            .ok_or(DiscontinueProductError::NotFound(id))?;
        if !product.discontinue(kernel::db::now()) {
            return Ok(());
        }
        persistence::update(&txn, &product).await.context("failed to discontinue a product")?;
        let event = ProductDiscontinued {
            product_id: id.as_uuid(),
            sku: product.details.sku.as_str().to_owned(),
            version: product.version.get(),
        };
        self.outbox.publish(&txn, &event, None).await?;
        self.outbox.commit(txn).await.context("failed to commit a discontinuation")?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(product.id = %id))]
    pub async fn get(&self, id: ProductId) -> anyhow::Result<Option<Product>> {
        persistence::find(&self.db, id).await.context("failed to load a product")
    }

    /// Up to `limit` products matching `filter`.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn list(&self, filter: &ProductFilter, limit: u64) -> anyhow::Result<Vec<Product>> {
        persistence::list(&self.db, filter, limit).await.context("failed to list products")
    }
}

fn snapshot(product: &Product) -> ProductSnapshot {
    let d = &product.details;
    ProductSnapshot {
        product_id: product.id.as_uuid(),
        sku: d.sku.as_str().to_owned(),
        name: d.name.as_str().to_owned(),
        description: d.description.as_str().to_owned(),
        price: d.price,
        status: product.status,
        version: product.version.get(),
    }
}
