//! async-h1 serving a fixed reply on one smol executor thread, as the design card first proposed.
use http_types::{Response, StatusCode};

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18080".into());
    let ex = smol::LocalExecutor::new();
    smol::block_on(ex.run(async {
        let listener = smol::net::TcpListener::bind(&addr).await.expect("bind");
        eprintln!("async-h1 probe on {addr}");
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            ex.spawn(async move {
                let _ = async_h1::accept(stream, |_req| async {
                    let mut res = Response::new(StatusCode::Ok);
                    res.set_body("ok");
                    Ok(res)
                })
                .await;
            })
            .detach();
        }
    }));
}
