//! Tera templates: the files kinit renders onto hosts (systemd units, configuration files,
//! kubeconfigs, manifests), and the string arguments of tasks. Loaded from kinit's built-in
//! templates or from a directory the operator points at.

use std::path::Path;

use super::assets::Assets;

pub struct Templates {
    tera: tera::Tera,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// Tera's error with its causes, which hold the line and the reason.
fn describe(error: &tera::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl Templates {
    pub fn load(assets: &Assets) -> Result<Templates, TemplateError> {
        let mut tera = tera::Tera::new();
        let files = assets.templates().map_err(TemplateError)?;
        tera.add_raw_templates(
            files
                .iter()
                .map(|(name, text)| (name.as_str(), text.as_str())),
        )
        .map_err(|e| TemplateError(format!("loading templates: {}", describe(&e))))?;
        Ok(Templates { tera })
    }

    pub fn render(&self, name: &str, context: &tera::Context) -> Result<String, TemplateError> {
        if !self.tera.contains_template(name) {
            return Err(TemplateError(format!(
                "no template named {name:?} in the templates directory"
            )));
        }
        self.tera
            .render(name, context)
            .map_err(|e| TemplateError(format!("rendering {name}: {}", describe(&e))))
    }

    /// Renders a string argument; text without template syntax is returned as it is.
    pub fn render_str(&self, text: &str, context: &tera::Context) -> Result<String, TemplateError> {
        if !text.contains("{{") && !text.contains("{%") {
            return Ok(text.to_owned());
        }
        self.tera
            .render_str(text, context, false)
            .map_err(|e| TemplateError(format!("in {text:?}: {}", describe(&e))))
    }

    /// Evaluates a condition such as `'worker' in host.groups`.
    pub fn condition(
        &self,
        expression: &str,
        context: &tera::Context,
    ) -> Result<bool, TemplateError> {
        let rendered = self
            .tera
            .render_str(
                &format!("{{% if {expression} %}}true{{% endif %}}"),
                context,
                false,
            )
            .map_err(|e| TemplateError(format!("condition {expression:?}: {}", describe(&e))))?;
        Ok(rendered == "true")
    }

    /// Renders every string inside a JSON value (task arguments).
    pub fn render_value(
        &self,
        value: &mut serde_json::Value,
        context: &tera::Context,
    ) -> Result<(), TemplateError> {
        match value {
            serde_json::Value::String(text) => *text = self.render_str(text, context)?,
            serde_json::Value::Array(items) => {
                for item in items {
                    self.render_value(item, context)?;
                }
            }
            serde_json::Value::Object(fields) => {
                for (_, field) in fields.iter_mut() {
                    self.render_value(field, context)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Whether a path names a template file rather than a directory entry to skip.
pub fn is_template(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
}
