//! The payments module's tables and queries. Entities never leave this file.

use sea_orm::entity::prelude::*;
use sea_orm::{ActiveValue::Set, ConnectionTrait};

use crate::domain::Note;

pub mod note {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments_notes")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub text: String,
        pub created_at: chrono::DateTime<chrono::Utc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub async fn insert(db: &impl ConnectionTrait, note: &Note) -> Result<(), DbErr> {
    let row = note::ActiveModel {
        id: Set(note.id.as_uuid()),
        text: Set(note.text.as_str().to_owned()),
        created_at: Set(note.created_at),
    };
    note::Entity::insert(row).exec_without_returning(db).await.map(drop)
}

pub async fn count(db: &impl ConnectionTrait) -> Result<u64, DbErr> {
    note::Entity::find().count(db).await
}
