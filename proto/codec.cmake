# proto codec part: XDR, ONC-RPC framing, ipsan procedures, login.
set(IPSAN_PROTO_CODEC_SOURCES src/xdr.cc src/rpc.cc src/codec.cc src/login.cc)
