//! XML and SOAP registries. An operation's `format` says what its registry
//! speaks; lgsp converts at the edge, so that schemas and mappings only ever
//! see JSON:
//!
//! - **Out**: the operation's `body` program builds JSON as usual; it is
//!   written as XML by the convention below and, for SOAP, put in the
//!   `Body` of an envelope of the declared version.
//! - **In**: the answer is read as XML (no DTD, at most [`MOST_DEPTH`]
//!   levels, at most [`MOST_BYTES`]); for SOAP the envelope is taken off and
//!   the `Body`'s elements are what the response schema and the mapping see,
//!   unless the body is a `Fault`, which is the registry's fault.
//!
//! **The convention** (both ways): an element is a property named by its
//! local name (its namespace prefix dropped when read; written as given, so
//! `"tns:GetEnterprise"` writes a prefixed element); its attributes are
//! `"@name"` properties (namespace declarations are not read); an element
//! with only text is a string, an empty one `null`; text beside attributes
//! or children is `"#text"`. Elements of the same name under one parent are
//! an array, and so is a single one where the response schema says the
//! property is an array. Values stay strings: XML has no numbers, so the
//! schema and the mapping convert (`tonumber`). Written, an object's
//! children come in the order of their names; a registry that wants another
//! order gets a body program that builds the XML as a string (escaping
//! values with `@html`).

use serde_json::{Map, Value};

/// How deep an answer's elements may nest.
pub const MOST_DEPTH: usize = 64;
/// The largest answer read, in bytes.
pub const MOST_BYTES: usize = 4 * 1024 * 1024;

pub const SOAP11_NS: &str = "http://schemas.xmlsoap.org/soap/envelope/";
pub const SOAP12_NS: &str = "http://www.w3.org/2003/05/soap-envelope";

/// What a registry's operation speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    #[default]
    Json,
    Xml,
    Soap11,
    Soap12,
}

impl Format {
    pub fn is_soap(self) -> bool {
        matches!(self, Format::Soap11 | Format::Soap12)
    }

    /// The request's content type; SOAP 1.2 carries its action in it.
    pub fn content_type(self, action: Option<&str>) -> String {
        match (self, action) {
            (Format::Json, _) => "application/json".into(),
            (Format::Xml, _) => "application/xml; charset=utf-8".into(),
            (Format::Soap11, _) => "text/xml; charset=utf-8".into(),
            (Format::Soap12, Some(a)) => format!("application/soap+xml; charset=utf-8; action=\"{a}\""),
            (Format::Soap12, None) => "application/soap+xml; charset=utf-8".into(),
        }
    }

    pub fn accept(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Xml => "application/xml, text/xml",
            Format::Soap11 => "text/xml",
            Format::Soap12 => "application/soap+xml",
        }
    }
}

impl Format {
    /// A body program's JSON as this format sends it: JSON, XML by the
    /// convention, or XML in a SOAP envelope.
    pub fn encode(self, body: &Value) -> Result<Vec<u8>, String> {
        match self {
            Format::Json => serde_json::to_vec(body).map_err(|e| e.to_string()),
            Format::Xml => Ok(write(body)?.into_bytes()),
            soap => Ok(envelope(soap, &write(body)?).into_bytes()),
        }
    }

    /// An answer in this format as JSON (arrays where `schema` says), or
    /// the SOAP fault it holds; an error says why it cannot be read.
    pub fn decode(self, bytes: &[u8], schema: &Value) -> Result<Result<Value, Fault>, String> {
        match self {
            Format::Json => serde_json::from_slice(bytes).map(Ok).map_err(|e| format!("not JSON: {e}")),
            Format::Xml => read(bytes, schema).map(Ok),
            Format::Soap11 | Format::Soap12 => read_soap(bytes, schema),
        }
    }
}

/// A SOAP fault: the registry's own refusal or failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// `faultcode` (1.1) or `Code/Value` (1.2), its prefix dropped: `Client`,
    /// `Server`, `Sender`, `Receiver`, or the registry's own.
    pub code: String,
    /// The code of the registry's own, where it gives one (`detail`, or a
    /// 1.2 `Subcode`), else empty.
    pub subcode: String,
    pub reason: String,
}

impl Fault {
    /// Whether the fault blames the request rather than the registry.
    pub fn is_senders(&self) -> bool {
        self.code == "Client" || self.code == "Sender"
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// Writes a JSON value as XML: an object of one or more elements by the
/// convention (children in the order of their names), or a string the body
/// program wrote as XML itself (for a registry that wants its children in
/// another order), which must be well-formed.
pub fn write(value: &Value) -> Result<String, String> {
    let elements = match value {
        Value::Object(elements) => elements,
        Value::String(xml) => {
            parse(format!("<lgsp>{xml}</lgsp>").as_bytes()).map_err(|e| format!("the body program's XML: {e}"))?;
            return Ok(xml.clone());
        }
        _ => {
            return Err("the body program must build an object of elements, such as {\"GetCitizen\": {…}}, \
                        or a string of XML"
                .into())
        }
    };
    let mut out = String::new();
    for (name, v) in elements {
        write_element(name, v, &mut out, 0)?;
    }
    Ok(out)
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn write_element(name: &str, value: &Value, out: &mut String, depth: usize) -> Result<(), String> {
    if !is_name(name) {
        return Err(format!("\"{name}\" is not an XML element name"));
    }
    if depth > MOST_DEPTH {
        return Err(format!("the body nests deeper than {MOST_DEPTH} elements"));
    }
    use quick_xml::escape::escape;
    match value {
        Value::Array(items) => {
            for item in items {
                write_element(name, item, out, depth)?;
            }
        }
        Value::Null => out.push_str(&format!("<{name}/>")),
        Value::Object(o) => {
            out.push('<');
            out.push_str(name);
            for (k, v) in o.iter().filter(|(k, _)| k.starts_with('@')) {
                let attr = &k[1..];
                if !is_name(attr) {
                    return Err(format!("\"{attr}\" is not an XML attribute name"));
                }
                out.push_str(&format!(" {attr}=\"{}\"", escape(text_of(v))));
            }
            out.push('>');
            if let Some(t) = o.get("#text") {
                out.push_str(&escape(text_of(t)));
            }
            for (k, v) in o.iter().filter(|(k, _)| !k.starts_with('@') && *k != "#text") {
                write_element(k, v, out, depth + 1)?;
            }
            out.push_str(&format!("</{name}>"));
        }
        scalar => out.push_str(&format!("<{name}>{}</{name}>", escape(text_of(scalar)))),
    }
    Ok(())
}

/// A SOAP envelope of `format`'s version around `body` (XML).
pub fn envelope(format: Format, body: &str) -> String {
    let ns = if format == Format::Soap12 { SOAP12_NS } else { SOAP11_NS };
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap:Envelope xmlns:soap=\"{ns}\"><soap:Body>{body}</soap:Body></soap:Envelope>"
    )
}

/// One element as read.
#[derive(Debug, Default)]
struct Node {
    name: String,
    attributes: Vec<(String, String)>,
    children: Vec<Node>,
    text: String,
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

/// Reads XML into its root element.
fn parse(xml: &[u8]) -> Result<Node, String> {
    use quick_xml::events::Event;
    if xml.len() > MOST_BYTES {
        return Err(format!("the answer is larger than {MOST_BYTES} bytes"));
    }
    let text = std::str::from_utf8(xml).map_err(|_| "not XML: the answer is not UTF-8".to_string())?;
    let mut reader = quick_xml::Reader::from_str(text);
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let open = |e: &quick_xml::events::BytesStart<'_>| -> Result<Node, String> {
        let name = e.name().as_ref().to_string();
        let mut attributes = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| format!("not XML: {e}"))?;
            let key = a.key.as_ref().to_string();
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("not XML: {e}"))?
                .into_owned();
            attributes.push((local(&key).to_string(), value));
        }
        Ok(Node { name: local(&name).to_string(), attributes, ..Default::default() })
    };
    loop {
        let event = reader.read_event().map_err(|e| format!("not XML: {e}"))?;
        match event {
            Event::Start(e) => {
                if stack.len() >= MOST_DEPTH {
                    return Err(format!("the answer nests deeper than {MOST_DEPTH} elements"));
                }
                if root.is_some() {
                    return Err("not XML: more than one root element".into());
                }
                stack.push(open(&e)?);
            }
            Event::Empty(e) => {
                let node = open(&e)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None if root.is_none() => root = Some(node),
                    None => return Err("not XML: more than one root element".into()),
                }
            }
            Event::End(_) => {
                let Some(node) = stack.pop() else { return Err("not XML: an end tag closes nothing".into()) };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) => {
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref().map_err(|e| format!("not XML: {e}"))? {
                    Some(c) => c.to_string(),
                    None => match &*r.xml10_content() {
                        "lt" => "<".into(),
                        "gt" => ">".into(),
                        "amp" => "&".into(),
                        "apos" => "'".into(),
                        "quot" => "\"".into(),
                        other => return Err(format!("not XML lgsp reads: the entity &{other}; is not defined")),
                    },
                };
                if let Some(n) = stack.last_mut() {
                    n.text.push_str(&resolved);
                }
            }
            Event::DocType(_) => return Err("not XML lgsp reads: a document type declaration (DTD) is refused".into()),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("not XML: the answer ends inside an element".into());
    }
    root.ok_or_else(|| "not XML: no element".to_string())
}

/// Whether the schema says the value is an array.
fn says_array(schema: &Value) -> bool {
    match &schema["type"] {
        Value::String(t) => t == "array",
        Value::Array(ts) => ts.iter().any(|t| t == "array"),
        _ => false,
    }
}

/// A node's value by the convention, arrays where `schema` says.
fn value_of(node: &Node, schema: &Value) -> Value {
    let text = node.text.trim();
    if node.attributes.is_empty() && node.children.is_empty() {
        return if text.is_empty() { Value::Null } else { Value::String(text.to_string()) };
    }
    let mut object = Map::new();
    for (k, v) in &node.attributes {
        object.insert(format!("@{k}"), Value::String(v.clone()));
    }
    if !text.is_empty() {
        object.insert("#text".into(), Value::String(text.to_string()));
    }
    children_into(&node.children, schema, &mut object);
    Value::Object(object)
}

fn children_into(children: &[Node], schema: &Value, object: &mut Map<String, Value>) {
    let mut names: Vec<&str> = Vec::new();
    for c in children {
        if !names.contains(&c.name.as_str()) {
            names.push(&c.name);
        }
    }
    for name in names {
        let of_name: Vec<&Node> = children.iter().filter(|c| c.name == name).collect();
        let property = &schema["properties"][name];
        let value = if of_name.len() > 1 || says_array(property) {
            Value::Array(of_name.iter().map(|c| value_of(c, &property["items"])).collect())
        } else {
            value_of(of_name[0], property)
        };
        object.insert(name.to_string(), value);
    }
}

/// An XML answer as JSON: `{root: …}`, arrays where `schema` says.
pub fn read(xml: &[u8], schema: &Value) -> Result<Value, String> {
    let root = parse(xml)?;
    let mut object = Map::new();
    children_into(std::slice::from_ref(&root), schema, &mut object);
    Ok(Value::Object(object))
}

/// A SOAP answer: the elements of its `Body` as JSON, or its fault.
pub fn read_soap(xml: &[u8], schema: &Value) -> Result<Result<Value, Fault>, String> {
    let root = parse(xml)?;
    if root.name != "Envelope" {
        return Err(format!("not a SOAP answer: the root element is {}, not Envelope", root.name));
    }
    let body = root
        .children
        .iter()
        .find(|c| c.name == "Body")
        .ok_or_else(|| "not a SOAP answer: the envelope has no Body".to_string())?;
    if let Some(fault) = body.children.iter().find(|c| c.name == "Fault") {
        return Ok(Err(fault_of(fault)));
    }
    let mut object = Map::new();
    children_into(&body.children, schema, &mut object);
    Ok(Ok(Value::Object(object)))
}

fn fault_of(fault: &Node) -> Fault {
    let child = |n: &Node, name: &str| n.children.iter().find(|c| c.name == name).map(|c| c.text.trim().to_string());
    let deep_text = |n: &Node| -> String {
        // The first text inside, depth first.
        fn first(n: &Node) -> Option<String> {
            if !n.text.trim().is_empty() {
                return Some(n.text.trim().to_string());
            }
            n.children.iter().find_map(first)
        }
        first(n).unwrap_or_default()
    };
    fn node<'n>(n: &'n Node, name: &str) -> Option<&'n Node> {
        n.children.iter().find(|c| c.name == name)
    }
    // SOAP 1.1: faultcode, faultstring, detail.
    if let Some(code) = child(fault, "faultcode") {
        return Fault {
            code: local(&code).to_string(),
            subcode: node(fault, "detail").map(deep_text).unwrap_or_default(),
            reason: child(fault, "faultstring").unwrap_or_default(),
        };
    }
    // SOAP 1.2: Code/Value, Code/Subcode/Value, Reason/Text.
    let code = node(fault, "Code");
    Fault {
        code: code.and_then(|c| child(c, "Value")).map(|v| local(&v).to_string()).unwrap_or_default(),
        subcode: code
            .and_then(|c| node(c, "Subcode"))
            .and_then(|s| child(s, "Value"))
            .map(|v| local(&v).to_string())
            .or_else(|| node(fault, "Detail").map(deep_text))
            .unwrap_or_default(),
        reason: node(fault, "Reason").and_then(|r| child(r, "Text")).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_written_as_xml_by_the_convention() {
        let body = json!({"tns:GetEnterprise": {"@xmlns:tns": "urn:dkkd", "Code": "0101234567", "Owner": null,
                                                "Lines": {"Line": ["4711", "5610"]}, "Note": "a < b & c"}});
        assert_eq!(
            write(&body).unwrap(),
            "<tns:GetEnterprise xmlns:tns=\"urn:dkkd\"><Code>0101234567</Code><Lines><Line>4711</Line>\
             <Line>5610</Line></Lines><Note>a &lt; b &amp; c</Note><Owner/></tns:GetEnterprise>"
        );
        assert_eq!(write(&json!("<B>1</B><A>2</A>")).unwrap(), "<B>1</B><A>2</A>", "a string is the XML itself");
        assert!(write(&json!("<B>1</A>")).is_err() && write(&json!(5)).is_err());
        assert!(write(&json!({"bad name": 1})).is_err());
    }

    #[test]
    fn xml_is_read_as_json_with_arrays_where_the_schema_says() {
        let xml = br#"<?xml version="1.0"?><r:Enterprise xmlns:r="urn:x" status="1"><Name>C&#244;ng ty &amp; co</Name>
            <Line>4711</Line><Empty/><Owner><Id>001</Id></Owner><Owner><Id>002</Id></Owner><![CDATA[ x ]]></r:Enterprise>"#;
        let schema = json!({"properties": {"Enterprise": {"properties": {"Line": {"type": "array"}}}}});
        let v = read(xml, &schema).unwrap();
        assert_eq!(
            v,
            json!({"Enterprise": {"@status": "1", "#text": "x", "Name": "Công ty & co", "Line": ["4711"], "Empty": null,
                                  "Owner": [{"Id": "001"}, {"Id": "002"}]}})
        );
        let single = read(b"<a><Line>1</Line></a>", &json!({})).unwrap();
        assert_eq!(single, json!({"a": {"Line": "1"}}), "without the schema, one element is one value");
    }

    #[test]
    fn bad_xml_is_refused_with_why() {
        for (xml, why) in [
            (&b"{\"json\": 1}"[..], "not XML"),
            (b"<a><b></a>", "not XML"),
            (b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", "DTD"),
            (b"<a>&nbsp;</a>", "entity"),
            (b"<a/><b/>", "more than one root"),
        ] {
            let e = read(xml, &json!({})).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let deep = "<a>".repeat(MOST_DEPTH + 1) + &"</a>".repeat(MOST_DEPTH + 1);
        assert!(read(deep.as_bytes(), &json!({})).unwrap_err().contains("deeper"));
    }

    #[test]
    fn soap_bodies_and_faults_of_both_versions() {
        let ok = envelope(Format::Soap11, "<GetResponse><Code>1</Code></GetResponse>");
        assert_eq!(read_soap(ok.as_bytes(), &json!({})).unwrap().unwrap(), json!({"GetResponse": {"Code": "1"}}));
        let f11 = br#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault>
            <faultcode>s:Client</faultcode><faultstring>Ma so khong hop le</faultstring><detail><ErrorCode>DN404</ErrorCode></detail>
            </s:Fault></s:Body></s:Envelope>"#;
        let fault = read_soap(f11, &json!({})).unwrap().unwrap_err();
        assert_eq!((fault.code.as_str(), fault.subcode.as_str(), fault.is_senders()), ("Client", "DN404", true));
        let f12 = br#"<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><env:Fault>
            <env:Code><env:Value>env:Receiver</env:Value><env:Subcode><env:Value>m:Busy</env:Value></env:Subcode></env:Code>
            <env:Reason><env:Text xml:lang="vi">He thong ban</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>"#;
        let fault = read_soap(f12, &json!({})).unwrap().unwrap_err();
        assert_eq!(fault, Fault { code: "Receiver".into(), subcode: "Busy".into(), reason: "He thong ban".into() });
        assert!(read_soap(b"<NotAnEnvelope/>", &json!({})).unwrap_err().contains("Envelope"));
    }
}
