//! A small, bounded XML tree for SOAP responses.
//!
//! Responses are read into [`Element`]s first and decoded into hand-written types afterwards. The tree keeps
//! only what vim25 decoding needs: local names, the `type` attribute of a ManagedObjectReference, the
//! `xsi:type` of polymorphic values, children and text. DTDs are refused outright (no entity expansion can
//! happen), and the nesting depth is capped so a hostile body cannot exhaust the stack or memory.

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

pub const XSI_NS: &[u8] = b"http://www.w3.org/2001/XMLSchema-instance";

/// Deepest nesting accepted. Real vim25 responses stay well under 40 levels.
pub const DEFAULT_MAX_DEPTH: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error("malformed XML: {0}")]
    Malformed(String),
    #[error("XML nesting deeper than {0} levels")]
    TooDeep(usize),
    #[error("XML document type declarations are not accepted")]
    Dtd,
    #[error("XML document is empty")]
    Empty,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Element {
    /// Local name, without prefix.
    pub name: String,
    /// The unqualified `type` attribute (what a ManagedObjectReference carries).
    pub type_attr: Option<String>,
    /// The `xsi:type` attribute, prefix stripped (`xsd:string` becomes `string`).
    pub xsi_type: Option<String>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn new(name: &str) -> Self {
        Element {
            name: name.to_string(),
            ..Default::default()
        }
    }

    /// First child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of the first child with this name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// Follows a path of child names.
    pub fn path(&self, names: &[&str]) -> Option<&Element> {
        let mut cur = self;
        for n in names {
            cur = cur.child(n)?;
        }
        Some(cur)
    }

    /// Serialises the element back to XML (used for recordings and diagnostics, not on the wire).
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        self.write_xml(&mut out);
        out
    }

    fn write_xml(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        if let Some(t) = &self.type_attr {
            out.push_str(&format!(" type=\"{}\"", escape(t)));
        }
        if let Some(t) = &self.xsi_type {
            out.push_str(&format!(" xsi:type=\"{}\"", escape(t)));
        }
        out.push('>');
        out.push_str(&escape(&self.text));
        for c in &self.children {
            c.write_xml(out);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

/// Escapes text for element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn strip_prefix(v: &str) -> String {
    match v.rsplit_once(':') {
        Some((_, local)) => local.to_string(),
        None => v.to_string(),
    }
}

/// Parses a whole document and returns its root element.
pub fn parse(doc: &str, max_depth: usize) -> Result<Element, XmlError> {
    let mut reader = NsReader::from_str(doc);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let ev = reader.read_event().map_err(|e| XmlError::Malformed(e.to_string()))?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if stack.len() >= max_depth {
                    return Err(XmlError::TooDeep(max_depth));
                }
                let mut el = Element::new(&String::from_utf8_lossy(e.local_name().as_ref()));
                for attr in e.attributes() {
                    let attr = attr.map_err(|e| XmlError::Malformed(e.to_string()))?;
                    let (ns, local) = reader.resolve_attribute(attr.key);
                    if local.as_ref() != b"type" {
                        continue;
                    }
                    let value = attr
                        .unescape_value()
                        .map_err(|e| XmlError::Malformed(e.to_string()))?
                        .into_owned();
                    match ns {
                        ResolveResult::Bound(n) if n.as_ref() == XSI_NS => el.xsi_type = Some(strip_prefix(&value)),
                        ResolveResult::Unbound => el.type_attr = Some(value),
                        _ => {}
                    }
                }
                let is_empty = matches!(ev, Event::Empty(_));
                if is_empty {
                    attach(&mut stack, &mut root, el)?;
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                let el = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("unbalanced end tag".into()))?;
                attach(&mut stack, &mut root, el)?;
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t.unescape().map_err(|e| XmlError::Malformed(e.to_string()))?;
                    top.text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::DocType(_) => return Err(XmlError::Dtd),
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("document ends inside an element".into()));
    }
    let mut root = root.ok_or(XmlError::Empty)?;
    trim_whitespace(&mut root);
    Ok(root)
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some(parent) => {
            parent.children.push(el);
            Ok(())
        }
        None if root.is_none() => {
            *root = Some(el);
            Ok(())
        }
        None => Err(XmlError::Malformed("more than one root element".into())),
    }
}

/// Pretty-printed responses put whitespace around child elements; it is not content.
fn trim_whitespace(el: &mut Element) {
    if !el.children.is_empty() && el.text.trim().is_empty() {
        el.text.clear();
    }
    for c in &mut el.children {
        trim_whitespace(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_moref_type_apart_from_xsi_type() {
        let doc = r#"<a xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:x="urn:other">
            <val xsi:type="ManagedObjectReference" type="HostSystem">host-1</val>
            <other x:type="ignored">t</other></a>"#;
        let root = parse(doc, 16).unwrap();
        let v = root.child("val").unwrap();
        assert_eq!(v.xsi_type.as_deref(), Some("ManagedObjectReference"));
        assert_eq!(v.type_attr.as_deref(), Some("HostSystem"));
        assert_eq!(v.text, "host-1");
        let o = root.child("other").unwrap();
        assert_eq!(o.type_attr, None);
        assert_eq!(o.xsi_type, None);
    }

    #[test]
    fn xsi_prefix_is_resolved_by_namespace_not_by_name() {
        let doc = r#"<a xmlns:q="http://www.w3.org/2001/XMLSchema-instance"><v q:type="xsd:string">s</v></a>"#;
        let root = parse(doc, 16).unwrap();
        assert_eq!(root.child("v").unwrap().xsi_type.as_deref(), Some("string"));
    }

    #[test]
    fn refuses_dtd_and_entities() {
        let doc = r#"<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "boom">]><a>&x;</a>"#;
        assert!(matches!(parse(doc, 16), Err(XmlError::Dtd)));
        let undefined = "<a>&x;</a>";
        assert!(matches!(parse(undefined, 16), Err(XmlError::Malformed(_))));
    }

    #[test]
    fn caps_depth() {
        let doc = format!("{}{}", "<a>".repeat(40), "</a>".repeat(40));
        assert!(matches!(parse(&doc, 32), Err(XmlError::TooDeep(32))));
        assert!(parse(&doc, 40).is_ok());
    }

    #[test]
    fn rejects_truncated_and_unescapes_text() {
        assert!(parse("<a><b>x</b>", 16).is_err());
        let root = parse("<a><b>x &amp; y &#x41;</b></a>", 16).unwrap();
        assert_eq!(root.child_text("b"), Some("x & y A"));
    }
}
