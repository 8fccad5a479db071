//! The `Date` header value (RFC 9110 §5.6.7 IMF-fixdate), formatted once per second.

use std::cell::RefCell;

thread_local! {
    static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Now, as `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn now() -> String {
    let secs = crate::clock::now_secs();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            *c = (secs, crate::clock::http_date(secs));
        }
        c.1.clone()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_an_imf_fixdate() {
        assert_eq!(super::now().len(), 29);
    }
}
