//! The database engines the tests run on: the kernel's test kit ([`kernel::testing`]), and a macro
//! that runs one test on each.

pub use kernel::testing::{Engine, TestDatabase};

/// `on_every_engine!(a, b)` turns `async fn a(engine: Engine)` into tests `sqlite::a`,
/// `postgres::a` and `mysql::a`.
macro_rules! on_every_engine {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test] async fn $name() { super::$name(crate::engines::Engine::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test] async fn $name() { super::$name(crate::engines::Engine::Postgres).await } )*
        }
        mod mysql {
            $( #[tokio::test] async fn $name() { super::$name(crate::engines::Engine::Mysql).await } )*
        }
    };
}
pub(crate) use on_every_engine;
