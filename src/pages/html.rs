//! The one HTML layout every page shares, and escaping.

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `title` is plain text; `body` is markup built by the caller from escaped parts.
pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"robots\" content=\"noindex\">\
<title>{} · postern</title><style>\
body{{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}}\
main{{max-width:36rem;margin:12vh auto;background:#fff;padding:2rem 2.5rem;border-radius:10px;box-shadow:0 2px 10px #0002}}\
h1{{font-size:1.4rem;margin-top:0}}th{{text-align:left;padding-right:1.5rem;color:#555;font-weight:500}}\
td,th{{padding:.25rem 1rem .25rem 0;vertical-align:top}}.button{{display:inline-block;background:#2456c7;color:#fff;padding:.45rem 1rem;\
border:0;font:inherit;cursor:pointer;border-radius:6px;text-decoration:none}}footer{{margin-top:2rem;color:#888;font-size:.8rem}}\
</style></head><body><main>{}<footer>postern</footer></main></body></html>\n",
        escape(title),
        body
    )
}
