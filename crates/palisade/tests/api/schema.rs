//! The OpenAPI document as the walks read it: resolving references, and a valid value for
//! any schema (unique where a field must be), so a walk can build a body an operation
//! accepts and then change one thing about it.

use serde_json::{json, Value};

use crate::helpers::PASSWORD;

pub struct Schemas {
    pub doc: Value,
    /// Makes every generated name and address unique.
    pub counter: usize,
}

impl Schemas {
    pub fn new(doc: Value) -> Self {
        Self { doc, counter: 0 }
    }

    pub fn resolve<'v>(&'v self, schema: &'v Value) -> &'v Value {
        match schema["$ref"].as_str() {
            Some(reference) => self
                .resolve(&self.doc["components"]["schemas"][reference.rsplit('/').next().unwrap()]),
            None => schema,
        }
    }

    /// The schema of a property, without the `null` of an optional one.
    pub fn property_schema<'v>(&'v self, schema: &'v Value) -> &'v Value {
        let schema = self.resolve(schema);
        match schema["oneOf"].as_array() {
            Some(options) => options
                .iter()
                .map(|o| self.resolve(o))
                .find(|o| o["type"] != "null")
                .unwrap_or(schema),
            None => schema,
        }
    }

    pub fn is_text(&self, schema: &Value) -> bool {
        let types = &schema["type"];
        types == "string"
            || types
                .as_array()
                .is_some_and(|t| t.contains(&json!("string")))
    }

    /// A value the schema admits, unique where a field must be (emails, names).
    pub fn valid(&mut self, name: &str, schema: &Value) -> Value {
        self.counter += 1;
        let schema = self.property_schema(schema).clone();
        if let Some(values) = schema["enum"].as_array() {
            return values[values.len() - 1].clone();
        }
        if schema["type"] == "array"
            || schema["type"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("array")))
        {
            let item = self.valid(name, &schema["items"]);
            return json!([item]);
        }
        if schema["type"] == "integer"
            || schema["type"]
                .as_array()
                .is_some_and(|t| t.contains(&json!("integer")))
        {
            return json!(schema["minimum"].as_i64().unwrap_or(1));
        }
        if schema["type"] == "boolean" {
            return json!(false);
        }
        if let Some(pattern) = schema["pattern"].as_str() {
            if let Some(prefix) = pattern
                .strip_prefix('^')
                .and_then(|p| p.split_once("_[0-9a-f]{32}"))
            {
                return json!(format!("{}_{}", prefix.0, "0".repeat(32)));
            }
            if pattern.contains("{43}") {
                return json!("A".repeat(43));
            }
            if pattern.contains("[0-9]{6}") {
                return json!("000000");
            }
        }
        if schema["format"] == "email" {
            return json!(format!("walker{}@example.com", self.counter));
        }
        if name == "current_password" {
            // Not the account's: a successful change would end the walker's session.
            return json!("not the current password");
        }
        if name.contains("password") {
            return json!(PASSWORD);
        }
        json!(format!("Name {}", self.counter))
    }

    /// The JSON body schema of an operation, resolved; None when it takes no JSON body.
    pub fn body_schema(&self, operation: &Value) -> Option<Value> {
        let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
        (!schema.is_null()).then(|| self.resolve(schema).clone())
    }

    /// A body the operation's schema accepts: a valid value for every property.
    pub fn valid_body(&mut self, schema: &Value) -> serde_json::Map<String, Value> {
        let mut body = serde_json::Map::new();
        for (name, property) in schema["properties"]
            .as_object()
            .cloned()
            .unwrap_or_default()
        {
            let value = self.valid(&name, &property);
            body.insert(name, value);
        }
        body
    }

    /// The JSON types a property's schema admits (`null` included when it is optional).
    pub fn types(&self, schema: &Value) -> Vec<String> {
        let resolved = self.resolve(schema);
        let mut types = Vec::new();
        let mut add = |schema: &Value| match &schema["type"] {
            Value::String(t) => types.push(t.clone()),
            Value::Array(ts) => {
                types.extend(ts.iter().filter_map(|t| t.as_str()).map(str::to_owned))
            }
            _ => {}
        };
        add(resolved);
        for option in resolved["oneOf"].as_array().into_iter().flatten() {
            add(self.resolve(option));
        }
        types
    }
}
