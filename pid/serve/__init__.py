"""Many images across machines: `pid serve`, a Ray Serve application (optional extra `serve`).

`pid.serve.protocol` parses requests and encodes responses (no Ray needed);
`pid.serve.app` is the deployment: one replica per GPU, batches per output-size bucket,
a bounded queue with 503 when full.
"""
