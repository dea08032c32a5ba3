//! Typed ids: one newtype over a UUIDv7 per entity, all made by one macro so they are alike.

/// Declares `pub struct $name(Uuid)` with `new` (a fresh UUIDv7), conversions, `Display`,
/// `FromStr`, serde as a plain UUID string and an OpenAPI schema.
#[macro_export]
macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(id: uuid::Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for uuid::Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                    .build()
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

typed_id!(
    /// A user account.
    UserId
);
typed_id!(
    /// A device session (also the refresh-token family).
    SessionId
);
typed_id!(
    /// One refresh token of a session.
    RefreshTokenId
);
typed_id!(
    /// A traveler's trip.
    TripId
);
typed_id!(
    /// A sender's parcel.
    ParcelId
);
typed_id!(
    /// A booking of a parcel on a trip.
    MatchId
);

#[cfg(test)]
mod tests {
    typed_id!(
        /// A test id.
        ThingId
    );

    #[test]
    fn ids_round_trip_through_strings_and_json() {
        let id = ThingId::new();
        assert_eq!(id.to_string().parse::<ThingId>().unwrap(), id);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ThingId>(&json).unwrap(), id);
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let a = ThingId::new();
        let b = ThingId::new();
        assert!(a < b);
    }
}
