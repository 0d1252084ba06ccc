# Tests of the proto codec part (XDR, ONC-RPC framing, ipsan procedures, login).
ipsan_test(NAME proto_codec_test LABELS unit
  SOURCES test/xdr_test.cc test/codec_test.cc test/login_test.cc
  LIBS ipsan_proto)
