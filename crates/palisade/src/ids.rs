//! Typed identifiers with a readable prefix in their text form (`ten_…`, `usr_…`).
//!
//! The prefix makes a pasted id self-describing and stops one kind of id being used for
//! another; the storage form is the bare UUID (v7, so indexes stay append-mostly).

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub(crate) fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            #[allow(dead_code)]
            pub(crate) fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0.simple())
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let hex = s
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .ok_or(InvalidId)?;
                if hex.len() != 32 {
                    return Err(InvalidId);
                }
                Uuid::try_parse(hex).map(Self).map_err(|_| InvalidId)
            }
        }

        const _: () = assert!($prefix.len() == 3, "id prefixes are three letters");

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                // On the stack, without the formatting machinery: ids are in most responses.
                let mut buf = [0u8; 3 + 1 + 32];
                buf[..3].copy_from_slice($prefix.as_bytes());
                buf[3] = b'_';
                self.0.simple().encode_lower(&mut buf[4..]);
                s.serialize_str(std::str::from_utf8(&buf).expect("ASCII"))
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse()
                    .map_err(|_| serde::de::Error::custom(concat!("expected a ", $prefix, "_ id")))
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^", $prefix, "_[0-9a-f]{32}$")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}

        // Stored as the bare UUID: hyphenated text on SQLite, `uuid` on PostgreSQL, so one
        // statement binds and reads ids the same way on both backends.
        impl sqlx::Type<sqlx::Sqlite> for $name {
            fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
                <String as sqlx::Type<sqlx::Sqlite>>::type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Sqlite> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut Vec<sqlx::sqlite::SqliteArgumentValue<'q>>,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, sqlx::Sqlite>>::encode(self.0.hyphenated().to_string(), buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Sqlite> for $name {
            fn decode(value: sqlx::sqlite::SqliteValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<'r, sqlx::Sqlite>>::decode(value)?;
                Ok(Self(Uuid::try_parse(text)?))
            }
        }

        impl sqlx::Type<sqlx::Postgres> for $name {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <Uuid as sqlx::Type<sqlx::Postgres>>::type_info()
            }
        }

        impl<'q> sqlx::Encode<'q, sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <Uuid as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.0, buf)
            }
        }

        impl<'r> sqlx::Decode<'r, sqlx::Postgres> for $name {
            fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                <Uuid as sqlx::Decode<'r, sqlx::Postgres>>::decode(value).map(Self)
            }
        }
    };
}

typed_id!(
    /// A tenant (organisation). Handlers obtain it from a verified credential only.
    TenantId,
    "ten"
);
typed_id!(
    /// A person who can sign in; may belong to several tenants.
    UserId,
    "usr"
);
typed_id!(
    /// A sign-in session: one refresh-token family.
    SessionId,
    "ses"
);
typed_id!(
    /// An invitation to join a tenant.
    InvitationId,
    "inv"
);
typed_id!(
    /// A tenant's custom role.
    CustomRoleId,
    "crl"
);
typed_id!(
    /// An application: a tenant's grouping of machine access (API keys, Agents).
    ApplicationId,
    "app"
);
typed_id!(
    /// An API key; its text form is the public id inside the key (claim KEY-1).
    ApiKeyId,
    "key"
);
typed_id!(
    /// A service credential of the app beside Palisade (claim APP-2).
    ServiceId,
    "svc"
);
typed_id!(
    /// A tenant token: five minutes of the app's work in one tenant (claim APP-8).
    TenantTokenId,
    "ttk"
);
typed_id!(
    /// A secret in a tenant's vault (claim SEC-3).
    SecretId,
    "sec"
);
typed_id!(
    /// A tenant's webhook endpoint (claim HOOK-1).
    EndpointId,
    "whk"
);

typed_id!(
    /// One webhook message: an event sent to every endpoint subscribed to its type.
    MessageId,
    "msg"
);

typed_id!(
    /// One attempt to deliver a message to an endpoint (claim HOOK-3).
    AttemptId,
    "att"
);

typed_id!(
    /// One of an endpoint's signing secrets (two while a rotation overlaps).
    SigningSecretId,
    "wss"
);

typed_id!(
    /// One audit event.
    EventId,
    "evt"
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid identifier")]
pub struct InvalidId;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_their_prefixed_text_form() {
        let id = TenantId::generate();
        let text = id.to_string();
        assert!(text.starts_with("ten_"));
        assert_eq!(text.parse::<TenantId>(), Ok(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{text}\""), "JSON and Display agree");
        assert_eq!(serde_json::from_str::<TenantId>(&json).unwrap(), id);
    }

    #[test]
    fn an_id_of_another_kind_or_shape_is_refused() {
        let user = UserId::generate().to_string();
        assert_eq!(user.parse::<TenantId>(), Err(InvalidId));
        for bad in [
            "",
            "ten_",
            "ten_xyz",
            "ten-0190f0f0f0f0f0f0f0f0f0f0f0f0f0f0",
        ] {
            assert_eq!(bad.parse::<TenantId>(), Err(InvalidId), "{bad}");
        }
    }
}
