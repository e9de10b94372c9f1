//! Resource tags and the rules every resource's tags follow.

/// Resource tags: an ordered map so that bodies and etags are deterministic.
pub type Tags = std::collections::BTreeMap<String, String>;

/// The most tags one resource carries.
pub const MAX_TAGS: usize = 50;
/// The longest tag key, in characters (keys are at least one character).
pub const MAX_TAG_KEY: usize = 128;
/// The longest tag value, in characters.
pub const MAX_TAG_VALUE: usize = 256;
/// Neither keys nor values may hold a control character (Unicode's `Cc`, what
/// `char::is_control` tests: U+0000-U+001F and U+007F-U+009F), as a pattern for the document.
pub const TAG_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$";

/// The `Tags` schema of the OpenAPI document: the rules above, stated once for every resource.
#[cfg(feature = "openapi")]
pub struct TagsSchema;

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for TagsSchema {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let string = |min: usize, max: usize| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(min))
                .max_length(Some(max))
                .pattern(Some(TAG_PATTERN))
        };
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(format!(
                "At most {MAX_TAGS} tags; keys 1-{MAX_TAG_KEY} characters, values at most \
                 {MAX_TAG_VALUE}, neither with control characters."
            )))
            .max_properties(Some(MAX_TAGS))
            .property_names(Some(string(1, MAX_TAG_KEY)))
            .additional_properties(Some(string(0, MAX_TAG_VALUE)))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for TagsSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "Tags".into()
    }
}
