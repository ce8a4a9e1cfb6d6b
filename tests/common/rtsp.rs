//! An RTSP server for tests: gst-rtsp-server in the test process, serving an H.264 MP4
//! file at `rtsp://127.0.0.1:PORT/test`, on its own GLib main loop thread.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use gstreamer_rtsp_server as rtsp_server;
use rtsp_server::prelude::*;
use rtsp_server::{glib, gst};

/// A running server; stopping it (or dropping it) disconnects every client and frees the port.
pub struct RtspServer {
    port: u16,
    context: glib::MainContext,
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
}

/// Serves `file` (H.264 in MP4) on 127.0.0.1:`port` at `/test`; `port` 0 picks a free one.
/// Each client gets its own pipeline that starts at the beginning of the file.
pub fn serve(file: &Path, port: u16) -> Result<RtspServer, String> {
    gst::init().map_err(|e| format!("GStreamer: {e}"))?;
    for element in ["qtdemux", "h264parse", "rtph264pay"] {
        if gst::ElementFactory::find(element).is_none() {
            return Err(format!("GStreamer element {element} is not installed"));
        }
    }
    if !file.is_file() {
        return Err(format!("{}: no such file", file.display()));
    }
    let launch = format!(
        "( filesrc location=\"{}\" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )",
        file.display()
    );
    let context = glib::MainContext::new();
    let main_loop = glib::MainLoop::new(Some(&context), false);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<u16, String>>();

    let thread = {
        let context = context.clone();
        let main_loop = main_loop.clone();
        std::thread::Builder::new()
            .name("rtsp-server".into())
            .spawn(move || run_server(&context, &main_loop, &launch, port, ready_tx))
            .map_err(|e| format!("cannot start the RTSP server thread: {e}"))?
    };
    match ready_rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(Ok(port)) => Ok(RtspServer {
            port,
            context,
            main_loop,
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err("RTSP server did not start within 10 s".into()),
    }
}

fn run_server(
    context: &glib::MainContext,
    main_loop: &glib::MainLoop,
    launch: &str,
    port: u16,
    ready: mpsc::Sender<Result<u16, String>>,
) {
    let result = context.with_thread_default(|| {
        let server = rtsp_server::RTSPServer::new();
        server.set_address("127.0.0.1");
        server.set_service(&port.to_string());
        let Some(mounts) = server.mount_points() else {
            let _ = ready.send(Err("RTSP server without mount points".into()));
            return;
        };
        let factory = rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(launch);
        factory.set_shared(false);
        mounts.add_factory("/test", factory);
        let source = match server.attach(Some(context)) {
            Ok(id) => id,
            Err(e) => {
                let _ = ready.send(Err(format!("RTSP server cannot listen on port {port}: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(server.bound_port() as u16));
        main_loop.run();

        // Stop listening, close every client connection, and let the loop finish the work
        // that closing queued before the server goes away.
        // The listening source lives in our context, not the default one: destroy it there.
        if let Some(listener) = context.find_source_by_id(&source) {
            listener.destroy();
        }
        server.client_filter(Some(&mut |_, _| rtsp_server::RTSPFilterResult::Remove));
        while context.iteration(false) {}
    });
    if let Err(e) = result {
        eprintln!("rtsp-server: cannot own the main context: {e}");
    }
}

impl RtspServer {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `rtsp://127.0.0.1:PORT/test`
    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}/test", self.port)
    }

    /// Stops the server: clients are disconnected and the port is free again on return.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            let main_loop = self.main_loop.clone();
            self.context.invoke(move || main_loop.quit());
            let _ = thread.join();
        }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}
