//! Domain enums stored as TEXT (each column has a CHECK listing the same names). The names come
//! from the domain types' own `as_str`/`parse`, so a state is spelled in exactly one place; here
//! diesel learns to bind and read them. A stored name that does not parse is a corrupt row and
//! fails the query (a permanent error), never a silent default.

use crate::domain::{
    AccountKind, CardStatus, CodeState, DeclineReason, EntryKind, Identity, LegKind, OrderState,
    PaymentMode, QrKind, SessionRole, TxState,
};
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use diesel::{AsExpression, FromSqlRow};

macro_rules! text_column {
    ($proxy:ident, $t:ty) => {
        /// Lets diesel bind and read the domain type (diesel's foreign derive: the domain
        /// crate stays free of diesel).
        #[derive(AsExpression, FromSqlRow)]
        #[diesel(foreign_derive, sql_type = Text)]
        #[allow(dead_code)]
        struct $proxy($t);

        impl ToSql<Text, Pg> for $t {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <str as ToSql<Text, Pg>>::to_sql(self.as_str(), out)
            }
        }

        impl FromSql<Text, Pg> for $t {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                let text = <String as FromSql<Text, Pg>>::from_sql(value)?;
                <$t>::parse(&text)
                    .ok_or_else(|| format!("{:?} is not a valid {}", text, stringify!($t)).into())
            }
        }
    };
}

text_column!(TxStateColumn, TxState);
text_column!(PaymentModeColumn, PaymentMode);
text_column!(IdentityColumn, Identity);
text_column!(DeclineReasonColumn, DeclineReason);
text_column!(CardStatusColumn, CardStatus);
text_column!(OrderStateColumn, OrderState);
text_column!(QrKindColumn, QrKind);
text_column!(CodeStateColumn, CodeState);
text_column!(EntryKindColumn, EntryKind);
text_column!(LegKindColumn, LegKind);
text_column!(AccountKindColumn, AccountKind);
text_column!(SessionRoleColumn, SessionRole);
