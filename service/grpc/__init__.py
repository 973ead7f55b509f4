"""The Open Inference Protocol over gRPC: KServe's GRPCInferenceService on the Gateway deployment, through Ray Serve's
own gRPC ingress (docs/http.md#grpc)."""
