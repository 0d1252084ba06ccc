-- ipsan.lua: Wireshark / tshark dissector for ipsan (docs/WIRESHARK.md).
--
--   reliable UDP (docs/RUDP.md): header (version, type, flags, connection id, boot epoch, packet
--     number), frames (PADDING, PING, ACK with its ranges, MESSAGE, FLOW, RESET_TOKEN, COOKIE),
--     RESET / CLOSE reasons, RETRY cookies, CRC32C checked; protected packets (flag 0x0002: 16-byte
--     Poly1305 tag instead of the CRC) decoded in integrity mode, shown opaque when encrypted
--     (flag 0x0004);
--   MESSAGE fragments reassembled into whole messages (retransmitted fragments tolerated);
--   TCP record marking (RFC 5531 section 11), fragments of a record joined;
--   ONC-RPC calls and replies of program 0x20495341 (proto/ipsan.x, docs/PROTOCOL.md): every
--     credential, verifier and argument/result field, calls matched to replies with the
--     response time.
-- Heuristic on any UDP and TCP port. Install: docs/WIRESHARK.md.
-- Written for Wireshark 4.0+ (Lua 5.2; bit32).

local ipsan_rudp = Proto("ipsan_rudp", "ipsan reliable UDP")
local ipsan_rm = Proto("ipsan_rm", "ipsan TCP record marking")
local ipsan_rpc = Proto("ipsan", "ipsan block storage RPC")

local PROG = 0x20495341
local AUTH_IPSAN = 0x49505331

local pkt_types = { [1] = "HELLO", [2] = "HELLO_ACK", [3] = "DATA", [4] = "RESET", [5] = "CLOSE",
                    [6] = "RETRY" }
local frame_types = { [0] = "PADDING", [1] = "PING", [2] = "ACK", [3] = "MESSAGE", [4] = "FLOW",
                      [5] = "RESET_TOKEN", [6] = "COOKIE", [7] = "BIND" }
local status_names = {
  [0] = "OK", [1] = "AUTH_FAILED", [2] = "STALE_SESSION", [3] = "UNKNOWN_DEVICE",
  [4] = "LBA_OUT_OF_RANGE", [5] = "INVALID_ARGUMENT", [6] = "TOO_LARGE", [7] = "IO_ERROR",
  [8] = "MEDIUM_ERROR", [9] = "WRITE_PROTECTED", [10] = "NOT_SUPPORTED", [11] = "NO_SPACE",
  [12] = "NOT_READY", [13] = "BUSY", [14] = "SEQ_MISORDERED", [15] = "BAD_MESSAGE",
  [16] = "MISCOMPARE", [17] = "TIMEOUT", [18] = "CONNECTION_LOST", [19] = "SHUTDOWN",
  [20] = "CAPACITY_CHANGED", [21] = "INTERNAL" }
local procs = { [0] = "NULL", [1] = "LOGIN_BEGIN", [2] = "LOGIN_FINISH", [3] = "LOGOUT",
                [4] = "SLOT_FENCE", [5] = "END_SESSION",
                [10] = "READY", [11] = "IDENTIFY", [12] = "CAPACITY", [20] = "READ", [21] = "WRITE",
                [22] = "FLUSH", [23] = "TRIM", [24] = "WRITE_ZEROES" }
local flavors = { [0] = "AUTH_NONE", [AUTH_IPSAN] = "AUTH_IPSAN" }
local accept_stats = { [0] = "SUCCESS", [1] = "PROG_UNAVAIL", [2] = "PROG_MISMATCH",
                       [3] = "PROC_UNAVAIL", [4] = "GARBAGE_ARGS", [5] = "SYSTEM_ERR" }
local auth_stats = { [0] = "AUTH_OK", [1] = "AUTH_BADCRED", [2] = "AUTH_REJECTEDCRED",
                     [3] = "AUTH_BADVERF", [4] = "AUTH_REJECTEDVERF", [5] = "AUTH_TOOWEAK" }

-- ------------------------------------------------------------------------------ fields ----
local F = ipsan_rudp.fields
F.version = ProtoField.uint8("ipsan_rudp.version", "Version")
F.type = ProtoField.uint8("ipsan_rudp.type", "Type", base.DEC, pkt_types)
F.flags = ProtoField.uint16("ipsan_rudp.flags", "Flags", base.HEX)
F.flag_ack_now = ProtoField.bool("ipsan_rudp.flags.ack_now", "ACK_NOW", 16, nil, 0x0001)
F.flag_protected = ProtoField.bool("ipsan_rudp.flags.protected", "PROTECTED (key phase)", 16, nil, 0x0002)
F.flag_encrypted = ProtoField.bool("ipsan_rudp.flags.encrypted", "ENCRYPTED", 16, nil, 0x0004)
F.conn_id = ProtoField.uint64("ipsan_rudp.conn_id", "Connection id", base.HEX)
F.epoch = ProtoField.uint32("ipsan_rudp.epoch", "Boot epoch")
F.pn = ProtoField.uint64("ipsan_rudp.pn", "Packet number")
F.crc = ProtoField.uint32("ipsan_rudp.crc", "CRC32C", base.HEX)
F.crc_ok = ProtoField.bool("ipsan_rudp.crc_ok", "CRC32C good")
F.tag = ProtoField.bytes("ipsan_rudp.tag", "Poly1305 tag")
F.ciphertext = ProtoField.bytes("ipsan_rudp.ciphertext", "Encrypted body")
F.reason = ProtoField.uint32("ipsan_rudp.reason", "Reason", base.DEC, status_names)
F.reset_token = ProtoField.bytes("ipsan_rudp.reset_token", "Stateless reset token")
F.cookie = ProtoField.bytes("ipsan_rudp.cookie", "Retry cookie")
F.cookie_time = ProtoField.uint64("ipsan_rudp.cookie.time_ms", "Cookie issue time (ms)")
F.frame = ProtoField.uint8("ipsan_rudp.frame", "Frame type", base.DEC, frame_types)
F.padding = ProtoField.uint32("ipsan_rudp.padding", "Padding bytes")
F.ack_largest = ProtoField.uint64("ipsan_rudp.ack.largest", "Largest acknowledged")
F.ack_delay = ProtoField.uint32("ipsan_rudp.ack.delay_us", "ACK delay (us)")
F.ack_count = ProtoField.uint8("ipsan_rudp.ack.range_count", "Range count")
F.ack_first = ProtoField.uint32("ipsan_rudp.ack.first_range", "First range length")
F.ack_gap = ProtoField.uint32("ipsan_rudp.ack.gap", "Gap")
F.ack_len = ProtoField.uint32("ipsan_rudp.ack.length", "Length")
F.ack_range = ProtoField.string("ipsan_rudp.ack.range", "Acknowledged")
F.msg_id = ProtoField.uint64("ipsan_rudp.msg.id", "Message id")
F.msg_total = ProtoField.uint32("ipsan_rudp.msg.total", "Message length")
F.msg_offset = ProtoField.uint32("ipsan_rudp.msg.offset", "Fragment offset")
F.msg_len = ProtoField.uint16("ipsan_rudp.msg.frag_len", "Fragment length")
F.msg_data = ProtoField.bytes("ipsan_rudp.msg.data", "Fragment data")
F.msg_dup = ProtoField.bool("ipsan_rudp.msg.duplicate", "Fragment already received (retransmission)")
F.msg_done_in = ProtoField.framenum("ipsan_rudp.msg.reassembled_in", "Reassembled in")
F.max_data = ProtoField.uint64("ipsan_rudp.flow.max_data", "Max data")
F.bind = ProtoField.uint64("ipsan_rudp.bind.session", "Bound session id", base.HEX)

local R = ipsan_rm.fields
R.last = ProtoField.bool("ipsan_rm.last", "Last fragment", 32, nil, 0x80000000)
R.len = ProtoField.uint32("ipsan_rm.length", "Fragment length", base.DEC, nil, 0x7FFFFFFF)

local P = ipsan_rpc.fields
P.xid = ProtoField.uint32("ipsan.xid", "XID", base.HEX)
P.msg_type = ProtoField.uint32("ipsan.msg_type", "Message type", base.DEC, { [0] = "CALL", [1] = "REPLY" })
P.rpcvers = ProtoField.uint32("ipsan.rpcvers", "RPC version")
P.prog = ProtoField.uint32("ipsan.prog", "Program", base.HEX)
P.vers = ProtoField.uint32("ipsan.vers", "Program version")
P.proc = ProtoField.uint32("ipsan.proc", "Procedure", base.DEC, procs)
P.cred_flavor = ProtoField.uint32("ipsan.cred.flavor", "Credential flavor", base.HEX, flavors)
P.cred_len = ProtoField.uint32("ipsan.cred.length", "Credential length")
P.session = ProtoField.uint64("ipsan.cred.session", "Session id", base.HEX)
P.slot = ProtoField.uint32("ipsan.cred.slot", "Slot")
P.seq = ProtoField.uint64("ipsan.cred.seq", "Sequence")
P.verf_flavor = ProtoField.uint32("ipsan.verf.flavor", "Verifier flavor", base.HEX, flavors)
P.verf_len = ProtoField.uint32("ipsan.verf.length", "Verifier length")
P.mac = ProtoField.bytes("ipsan.verf.mac", "MAC (Poly1305)")
P.cred_body = ProtoField.bytes("ipsan.cred.body", "Credential body")
P.verf_body = ProtoField.bytes("ipsan.verf.body", "Verifier body")
P.device = ProtoField.uint32("ipsan.device", "Device id")
P.lba = ProtoField.uint64("ipsan.lba", "LBA")
P.blocks = ProtoField.uint32("ipsan.blocks", "Blocks")
P.flags = ProtoField.uint32("ipsan.flags", "Flags", base.HEX)
P.flag_fua = ProtoField.bool("ipsan.flags.fua", "FUA", 32, nil, 1)
P.flag_may_trim = ProtoField.bool("ipsan.flags.may_trim", "MAY_TRIM", 32, nil, 2)
P.data_len = ProtoField.uint32("ipsan.data.length", "Data length")
P.data = ProtoField.bytes("ipsan.data", "Data")
P.client_name = ProtoField.string("ipsan.login.client", "Client name")
P.client_nonce = ProtoField.bytes("ipsan.login.client_nonce", "Client nonce")
P.server_nonce = ProtoField.bytes("ipsan.login.server_nonce", "Server nonce")
P.transport_security = ProtoField.uint32("ipsan.login.transport_security", "Transport security",
                                         base.DEC, { [0] = "off", [1] = "integrity", [2] = "encrypted" })
P.end_session = ProtoField.uint64("ipsan.end_session", "Session to end", base.HEX)
P.proof = ProtoField.bytes("ipsan.login.proof", "Client proof")
P.server_proof = ProtoField.bytes("ipsan.login.server_proof", "Server proof")
P.boot_epoch = ProtoField.uint32("ipsan.login.boot_epoch", "Boot epoch")
P.slot_count = ProtoField.uint32("ipsan.login.slot_count", "Slot count")
P.max_request = ProtoField.uint32("ipsan.login.max_request_bytes", "Max request bytes")
P.new_session = ProtoField.uint64("ipsan.login.session", "Session id", base.HEX)
P.reply_stat = ProtoField.uint32("ipsan.reply_stat", "Reply status", base.DEC, { [0] = "MSG_ACCEPTED", [1] = "MSG_DENIED" })
P.accept_stat = ProtoField.uint32("ipsan.accept_stat", "Accept status", base.DEC, accept_stats)
P.reject_stat = ProtoField.uint32("ipsan.reject_stat", "Reject status", base.DEC, { [0] = "RPC_MISMATCH", [1] = "AUTH_ERROR" })
P.auth_stat = ProtoField.uint32("ipsan.auth_stat", "Auth status", base.DEC, auth_stats)
P.mismatch_low = ProtoField.uint32("ipsan.mismatch.low", "Lowest version")
P.mismatch_high = ProtoField.uint32("ipsan.mismatch.high", "Highest version")
P.status = ProtoField.uint32("ipsan.status", "Status", base.DEC, status_names)
P.block_size = ProtoField.uint32("ipsan.block_size", "Block size")
P.block_count = ProtoField.uint64("ipsan.block_count", "Block count")
P.vendor = ProtoField.string("ipsan.identity.vendor", "Vendor")
P.product = ProtoField.string("ipsan.identity.product", "Product")
P.revision = ProtoField.string("ipsan.identity.revision", "Revision")
P.serial = ProtoField.string("ipsan.identity.serial", "Serial")
P.uuid = ProtoField.bytes("ipsan.identity.uuid", "UUID")
P.caps = ProtoField.uint32("ipsan.identity.capabilities", "Capabilities", base.HEX)
P.cap_fua = ProtoField.bool("ipsan.identity.cap.fua", "FUA", 32, nil, 1)
P.cap_flush = ProtoField.bool("ipsan.identity.cap.flush", "FLUSH", 32, nil, 2)
P.cap_trim = ProtoField.bool("ipsan.identity.cap.trim", "TRIM", 32, nil, 4)
P.cap_wz = ProtoField.bool("ipsan.identity.cap.write_zeroes", "WRITE_ZEROES", 32, nil, 8)
P.cap_ro = ProtoField.bool("ipsan.identity.cap.read_only", "READ_ONLY", 32, nil, 16)
P.cap_rot = ProtoField.bool("ipsan.identity.cap.rotational", "ROTATIONAL", 32, nil, 32)
P.max_transfer = ProtoField.uint32("ipsan.identity.max_transfer_blocks", "Max transfer blocks")
P.opt_transfer = ProtoField.uint32("ipsan.identity.optimal_transfer_blocks", "Optimal transfer blocks")
P.reply_in = ProtoField.framenum("ipsan.reply_in", "Reply in", base.NONE, frametype.RESPONSE)
P.call_in = ProtoField.framenum("ipsan.call_in", "Call in", base.NONE, frametype.REQUEST)
P.time = ProtoField.relative_time("ipsan.time", "Response time")
P.reply_proc = ProtoField.uint32("ipsan.reply_proc", "Procedure (from the call)", base.DEC, procs)
P.dup_reply = ProtoField.bool("ipsan.duplicate_reply", "Duplicate reply")

local E_malformed = ProtoExpert.new("ipsan.malformed", "Malformed ipsan message", expert.group.MALFORMED, expert.severity.ERROR)
local E_bad_crc = ProtoExpert.new("ipsan_rudp.bad_crc", "Bad CRC32C", expert.group.CHECKSUM, expert.severity.ERROR)
local E_rudp_malformed = ProtoExpert.new("ipsan_rudp.malformed", "Malformed rudp datagram", expert.group.MALFORMED, expert.severity.ERROR)
local E_unmatched = ProtoExpert.new("ipsan.unmatched_reply", "Reply without a call in this capture", expert.group.SEQUENCE, expert.severity.NOTE)
ipsan_rudp.experts = { E_bad_crc, E_rudp_malformed }
ipsan_rpc.experts = { E_malformed, E_unmatched }

-- ------------------------------------------------------------------------------ CRC32C ----
local crc_table = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if bit32.band(c, 1) ~= 0 then c = bit32.bxor(bit32.rshift(c, 1), 0x82F63B78) else c = bit32.rshift(c, 1) end
  end
  crc_table[i] = c
end
local function crc32c(tvb, offset, len)
  local bytes = tvb:raw(offset, len)
  local c = 0xFFFFFFFF
  for i = 1, #bytes do
    c = bit32.bxor(crc_table[bit32.band(bit32.bxor(c, bytes:byte(i)), 0xFF)], bit32.rshift(c, 8))
  end
  return bit32.bxor(c, 0xFFFFFFFF)
end

-- ------------------------------------------------------------------------------ state ----
-- Filled on the first pass over the capture, read on every pass (GUI re-dissection).
local state = {}
local function reset_state()
  state.conns = {}          -- conn id hex -> true: seen in a CRC-checked datagram
  state.frags = {}          -- message key -> { total, have, parts = {offset -> string}, done }
  state.done = {}           -- frame -> list of { key, bytes (string) } completed in that frame
  state.frag_seen = {}      -- frame .. "/" .. frag index -> { dup, done_in }
  state.rm_buf = {}         -- TCP stream/direction -> pending record fragments (strings)
  state.calls = {}          -- conversation/xid -> { frame, time, proc }
  state.replies = {}        -- conversation/xid -> frame of the first reply
  state.reply_info = {}     -- reply frame .. "/" .. xid -> { call frame, time, proc, dup }
  state.call_info = {}      -- call frame .. "/" .. xid -> { proc }
end
reset_state()
function ipsan_rudp.init() reset_state() end

local function key_of(pinfo, extra)
  return tostring(pinfo.src) .. ":" .. pinfo.src_port .. ">" .. tostring(pinfo.dst) .. ":" .. pinfo.dst_port .. "/" .. extra
end
-- The same for both directions (RPC matching).
local function conv_of(pinfo, extra)
  local a = tostring(pinfo.src) .. ":" .. pinfo.src_port
  local b = tostring(pinfo.dst) .. ":" .. pinfo.dst_port
  if a > b then a, b = b, a end
  return a .. "|" .. b .. "/" .. extra
end

-- ------------------------------------------------------------------------------ RPC ----
local Reader = {}
Reader.__index = Reader
local function reader(tvb, tree)
  return setmetatable({ tvb = tvb, tree = tree, off = 0, bad = false }, Reader)
end
function Reader:left() return self.tvb:len() - self.off end
function Reader:need(n)
  if self.bad or self:left() < n then self.bad = true; return false end
  return true
end
function Reader:u32(field, tree)
  if not self:need(4) then return nil end
  local r = self.tvb:range(self.off, 4)
  local v = r:uint()
  if field then (tree or self.tree):add(field, r) end
  self.off = self.off + 4
  return v, r
end
function Reader:u64(field, tree)
  if not self:need(8) then return nil end
  local r = self.tvb:range(self.off, 8)
  local v = r:uint64()
  if field then (tree or self.tree):add(field, r) end
  self.off = self.off + 8
  return v, r
end
function Reader:fixed(field, n, tree)
  if not self:need(n) then return nil end
  local r = self.tvb:range(self.off, n)
  if field then (tree or self.tree):add(field, r) end
  self.off = self.off + n
  return r
end
-- XDR variable-length opaque / string: u32 length, bytes, padding to 4.
function Reader:opaque(field, max, tree, len_field)
  if not self:need(4) then return nil end
  local lr = self.tvb:range(self.off, 4)
  local n = lr:uint()
  if n > max then self.bad = true; return nil end
  if len_field then (tree or self.tree):add(len_field, lr) end
  self.off = self.off + 4
  local padded = n + (4 - n % 4) % 4
  if not self:need(padded) then return nil end
  local r = nil
  if n > 0 then
    r = self.tvb:range(self.off, n)
    if field then (tree or self.tree):add(field, r) end
  elseif field then
    (tree or self.tree):add(field, self.tvb:range(self.off, 0))
  end
  self.off = self.off + padded
  return r, n
end

-- A labelled subtree over tvb[off..end] (or with no bytes when nothing is left).
local function subtree(tree, tvb, off, label)
  if off < tvb:len() then return tree:add(ipsan_rpc, tvb:range(off, tvb:len() - off), label) end
  return tree:add(ipsan_rpc, label)
end

local function io_args(rd, proc, tree)
  local dev = rd:u32(P.device, tree)
  local lba = rd:u64(P.lba, tree)
  local blocks = rd:u32(P.blocks, tree)
  local fl, fr = rd:u32(nil)
  if fr then
    local ft = tree:add(P.flags, fr)
    ft:add(P.flag_fua, fr)
    ft:add(P.flag_may_trim, fr)
  end
  local _, n = rd:opaque(P.data, 8388608, tree, P.data_len)
  if dev == nil or n == nil then return "" end
  local s = string.format(" dev=%d lba=%s blocks=%d", dev, tostring(lba), blocks)
  if fl ~= 0 then s = s .. string.format(" flags=0x%x", fl) end
  if n > 0 then s = s .. " data=" .. n end
  return s
end

local function dissect_call(rd, tvb, pinfo, tree, conv, xid)
  rd:u32(P.rpcvers)
  local prog = rd:u32(P.prog)
  rd:u32(P.vers)
  local proc = rd:u32(P.proc)
  local flavor = rd:u32(P.cred_flavor)
  local clen = rd:u32(P.cred_len)
  if rd.bad then return nil end
  local ct = subtree(tree, tvb, rd.off - 8, "Credential")
  if flavor == AUTH_IPSAN and clen == 20 then
    rd:u64(P.session, ct)
    rd:u32(P.slot, ct)
    rd:u64(P.seq, ct)
  elseif clen > 0 then
    if clen > 400 then rd.bad = true return nil end
    rd:fixed(P.cred_body, clen + (4 - clen % 4) % 4, ct)
  end
  local vflavor = rd:u32(P.verf_flavor)
  local vlen = rd:u32(P.verf_len)
  if rd.bad then return nil end
  if vflavor == AUTH_IPSAN and vlen == 16 then
    rd:fixed(P.mac, 16)
  elseif vlen > 0 then
    if vlen > 400 then rd.bad = true return nil end
    rd:fixed(P.verf_body, vlen + (4 - vlen % 4) % 4)
  end
  if prog ~= PROG then return "CALL prog " .. string.format("0x%x", prog) end
  local name = procs[proc] or ("proc " .. proc)
  local at = subtree(tree, tvb, rd.off, name .. " arguments")
  local info = ""
  if proc == 1 then
    local r = rd:opaque(P.client_name, 64, at)
    rd:fixed(P.client_nonce, 16, at)
    -- Optional offer (docs/PROTOCOL.md "Login"): absent in older clients' calls.
    if rd:left() >= 4 then rd:u32(P.transport_security, at) end
    if r then info = " client=" .. r:string() end
  elseif proc == 2 then
    local r = rd:opaque(P.client_name, 64, at)
    rd:fixed(P.client_nonce, 16, at)
    rd:fixed(P.server_nonce, 16, at)
    rd:fixed(P.proof, 32, at)
    if rd:left() >= 4 then rd:u32(P.transport_security, at) end
    if r then info = " client=" .. r:string() end
  elseif proc == 5 then
    rd:u64(P.end_session, at)
  elseif proc >= 10 and proc <= 24 and procs[proc] then
    info = io_args(rd, proc, at)
  end
  if rd:left() ~= 0 then rd.bad = true end
  -- Call/reply matching.
  local k = conv .. "/" .. xid
  local fk = pinfo.number .. "/" .. xid
  if not pinfo.visited then
    state.calls[k] = { frame = pinfo.number, time = pinfo.abs_ts, proc = proc }
    state.call_info[fk] = { proc = proc, key = k }
  end
  local ci = state.call_info[fk]
  if ci and state.replies[ci.key .. "/" .. pinfo.number] then
    tree:add(P.reply_in, state.replies[ci.key .. "/" .. pinfo.number])
  end
  return "CALL " .. name .. info
end

local function dissect_results(rd, proc, tree)
  local st = rd:u32(P.status, tree)
  if st == nil then return "" end
  local s = " " .. (status_names[st] or tostring(st))
  if st ~= 0 then return s end
  if proc == 1 then
    rd:fixed(P.server_nonce, 16, tree)
    rd:u32(P.boot_epoch, tree)
  elseif proc == 2 then
    local sid = rd:u64(P.new_session, tree)
    rd:u32(P.boot_epoch, tree)
    rd:u32(P.slot_count, tree)
    rd:u32(P.max_request, tree)
    rd:fixed(P.server_proof, 32, tree)
    if sid then s = s .. " session=" .. sid:tohex() end
  elseif proc == 10 or proc == 12 then
    rd:u32(P.block_size, tree)
    local n = rd:u64(P.block_count, tree)
    if n then s = s .. " blocks=" .. tostring(n) end
  elseif proc == 11 then
    rd:opaque(P.vendor, 8, tree)
    local p = rd:opaque(P.product, 16, tree)
    rd:opaque(P.revision, 4, tree)
    rd:opaque(P.serial, 32, tree)
    rd:fixed(P.uuid, 16, tree)
    rd:u32(P.block_size, tree)
    rd:u64(P.block_count, tree)
    local _, cr = rd:u32(nil)
    if cr then
      local c = tree:add(P.caps, cr)
      for _, f in ipairs({ P.cap_fua, P.cap_flush, P.cap_trim, P.cap_wz, P.cap_ro, P.cap_rot }) do c:add(f, cr) end
    end
    rd:u32(P.max_transfer, tree)
    rd:u32(P.opt_transfer, tree)
    if p then s = s .. " product=" .. p:string() end
  elseif proc == 20 then
    local _, n = rd:opaque(P.data, 8388608, tree, P.data_len)
    if n then s = s .. " data=" .. n end
  end
  return s
end

local function dissect_reply(rd, tvb, pinfo, tree, conv, xid)
  local k = conv .. "/" .. xid
  local rk = pinfo.number .. "/" .. xid
  if not pinfo.visited then
    local c = state.calls[k]
    if c then
      local first = state.replies[k .. "/" .. c.frame]
      state.reply_info[rk] = { call = c.frame, time = pinfo.abs_ts - c.time, proc = c.proc, dup = first ~= nil }
      if not first then state.replies[k .. "/" .. c.frame] = pinfo.number end
    end
  end
  local ri = state.reply_info[rk]
  local proc = nil
  if ri then
    tree:add(P.call_in, ri.call)
    tree:add(P.time, NSTime.new(math.floor(ri.time), math.floor((ri.time % 1) * 1e9 + 0.5)))
    tree:add(P.reply_proc, ri.proc):set_generated()
    if ri.dup then tree:add(P.dup_reply, true):set_generated() end
    proc = ri.proc
  else
    tree:add_proto_expert_info(E_unmatched)
  end
  local rs = rd:u32(P.reply_stat)
  if rs == nil then return nil end
  local name = proc and (procs[proc] or ("proc " .. proc)) or "?"
  if rs == 1 then
    local rj = rd:u32(P.reject_stat)
    if rj == 0 then
      rd:u32(P.mismatch_low)
      rd:u32(P.mismatch_high)
      return "REPLY " .. name .. " denied RPC_MISMATCH"
    elseif rj == 1 then
      local a = rd:u32(P.auth_stat)
      return "REPLY " .. name .. " denied " .. (auth_stats[a or -1] or tostring(a))
    end
    rd.bad = true
    return nil
  elseif rs ~= 0 then
    rd.bad = true
    return nil
  end
  local vflavor = rd:u32(P.verf_flavor)
  local vlen = rd:u32(P.verf_len)
  if rd.bad then return nil end
  if vflavor == AUTH_IPSAN and vlen == 16 then
    rd:fixed(P.mac, 16)
  elseif vlen > 0 then
    if vlen > 400 then rd.bad = true return nil end
    rd:fixed(P.verf_body, vlen + (4 - vlen % 4) % 4)
  end
  local as = rd:u32(P.accept_stat)
  if as == nil then return nil end
  if as == 2 then
    rd:u32(P.mismatch_low)
    rd:u32(P.mismatch_high)
  end
  if as ~= 0 then return "REPLY " .. name .. " " .. (accept_stats[as] or tostring(as)) end
  local s = ""
  if proc ~= nil then
    local rt = subtree(tree, tvb, rd.off, name .. " results")
    s = dissect_results(rd, proc, rt)
    if rd:left() ~= 0 then rd.bad = true end
  else
    rd.off = tvb:len()  -- results cannot be decoded without the call
  end
  return "REPLY " .. name .. s
end

-- Dissects one whole ONC-RPC message; `conv` identifies the conversation for xid matching.
local function dissect_rpc(tvb, pinfo, parent, conv)
  local tree = parent:add(ipsan_rpc, tvb:range(0, tvb:len()))
  local rd = reader(tvb, tree)
  local xid = rd:u32(P.xid)
  local mt = rd:u32(P.msg_type)
  local info = nil
  if mt == 0 then
    info = dissect_call(rd, tvb, pinfo, tree, conv, xid)
  elseif mt == 1 then
    info = dissect_reply(rd, tvb, pinfo, tree, conv, xid)
  else
    rd.bad = true
  end
  if rd.bad or info == nil then
    tree:add_proto_expert_info(E_malformed)
    info = (info or "RPC") .. " [malformed]"
  end
  tree:append_text(": " .. info)
  pinfo.cols.protocol:set("ipsan")
  local cur = tostring(pinfo.cols.info)
  if cur:find("^ipsan") or cur == "" then pinfo.cols.info:set(info) else pinfo.cols.info:append("; " .. info) end
  return info
end

-- ------------------------------------------------------------------------------ rudp ----
local function hex64(v) return v:tohex() end

local function dissect_frames(tvb, pinfo, tree, off, stop, conn_hex, messages)
  local pad = 0
  local pad_start = 0
  local summary = {}
  local frag_index = 0
  while off < stop do
    local t = tvb:range(off, 1):uint()
    if t ~= 0 and pad > 0 then
      tree:add(F.padding, tvb:range(pad_start, pad), pad)
      pad = 0
    end
    if t == 0 then
      if pad == 0 then pad_start = off end
      pad = pad + 1
      off = off + 1
    elseif t == 1 then
      tree:add(F.frame, tvb:range(off, 1), t)
      summary[#summary + 1] = "PING"
      off = off + 1
    elseif t == 2 then
      if stop - off < 18 then return false end
      local count = tvb:range(off + 13, 1):uint()
      local len = 18 + 8 * (count - 1)
      if count < 1 or count > 64 or stop - off < len then return false end
      local ft = tree:add(F.frame, tvb:range(off, len), t)
      local largest = tvb:range(off + 1, 8):uint64()
      ft:add(F.ack_largest, tvb:range(off + 1, 8))
      ft:add(F.ack_delay, tvb:range(off + 9, 4))
      ft:add(F.ack_count, tvb:range(off + 13, 1))
      ft:add(F.ack_first, tvb:range(off + 14, 4))
      local first = tvb:range(off + 14, 4):uint()
      if UInt64(first) > largest then return false end
      local hi = largest
      local lo = largest - first
      local ranges = { tostring(lo) .. "-" .. tostring(hi) }
      ft:add(F.ack_range, tvb:range(off + 14, 4), tostring(lo) .. ".." .. tostring(hi))
      for i = 1, count - 1 do
        local p = off + 18 + 8 * (i - 1)
        local gap = tvb:range(p, 4):uint()
        local l = tvb:range(p + 4, 4):uint()
        ft:add(F.ack_gap, tvb:range(p, 4))
        ft:add(F.ack_len, tvb:range(p + 4, 4))
        if lo < UInt64(gap + 2 + l) then return false end
        hi = lo - gap - 2
        lo = hi - l
        ranges[#ranges + 1] = tostring(lo) .. "-" .. tostring(hi)
        ft:add(F.ack_range, tvb:range(p, 8), tostring(lo) .. ".." .. tostring(hi))
      end
      ft:append_text(" ACK " .. table.concat(ranges, ","))
      summary[#summary + 1] = "ACK " .. table.concat(ranges, ",")
      off = off + len
    elseif t == 3 then
      if stop - off < 19 then return false end
      local id = tvb:range(off + 1, 8):uint64()
      local total = tvb:range(off + 9, 4):uint()
      local foff = tvb:range(off + 13, 4):uint()
      local flen = tvb:range(off + 17, 2):uint()
      if stop - off < 19 + flen or foff + flen > total then return false end
      local ft = tree:add(F.frame, tvb:range(off, 19 + flen), t)
      ft:add(F.msg_id, tvb:range(off + 1, 8))
      ft:add(F.msg_total, tvb:range(off + 9, 4))
      ft:add(F.msg_offset, tvb:range(off + 13, 4))
      ft:add(F.msg_len, tvb:range(off + 17, 2))
      if flen > 0 then ft:add(F.msg_data, tvb:range(off + 19, flen)) end
      ft:append_text(string.format(" MESSAGE id=%s %d+%d/%d", tostring(id), foff, flen, total))
      summary[#summary + 1] = string.format("MSG %s %d+%d/%d", tostring(id), foff, flen, total)
      -- Reassembly (first pass only; later passes read what it recorded).
      frag_index = frag_index + 1
      local fk = pinfo.number .. "/" .. frag_index
      if not pinfo.visited then
        local mk = key_of(pinfo, conn_hex .. "/" .. tostring(id))
        local m = state.frags[mk]
        if m == nil then
          m = { total = total, have = 0, parts = {}, done = nil }
          state.frags[mk] = m
        end
        local info = { dup = false }
        if m.done or m.parts[foff] ~= nil or total ~= m.total then
          info.dup = true
        else
          m.parts[foff] = tvb:raw(off + 19, flen)
          m.have = m.have + flen
          if m.have >= m.total then
            -- Whole: join the parts in offset order.
            local offs = {}
            for o in pairs(m.parts) do offs[#offs + 1] = o end
            table.sort(offs)
            local buf = {}
            local at = 0
            local ok = true
            for _, o in ipairs(offs) do
              if o ~= at then ok = false break end
              buf[#buf + 1] = m.parts[o]
              at = at + #m.parts[o]
            end
            m.parts = {}
            m.done = pinfo.number
            if ok and at == m.total then
              state.done[pinfo.number] = state.done[pinfo.number] or {}
              table.insert(state.done[pinfo.number], table.concat(buf))
            end
          end
        end
        info.done_in = m.done
        state.frag_seen[fk] = info
      end
      local seen = state.frag_seen[fk]
      if seen then
        if seen.dup then ft:add(F.msg_dup, true):set_generated() end
      end
      off = off + 19 + flen
    elseif t == 4 then
      if stop - off < 9 then return false end
      local ft = tree:add(F.frame, tvb:range(off, 9), t)
      ft:add(F.max_data, tvb:range(off + 1, 8))
      summary[#summary + 1] = "FLOW"
      off = off + 9
    elseif t == 5 then
      if stop - off < 17 then return false end
      local ft = tree:add(F.frame, tvb:range(off, 17), t)
      ft:add(F.reset_token, tvb:range(off + 1, 16))
      summary[#summary + 1] = "RESET_TOKEN"
      off = off + 17
    elseif t == 6 then
      if stop - off < 25 then return false end
      local ft = tree:add(F.frame, tvb:range(off, 25), t)
      ft:add(F.cookie, tvb:range(off + 1, 24))
      summary[#summary + 1] = "COOKIE"
      off = off + 25
    elseif t == 7 then
      if stop - off < 9 then return false end
      local ft = tree:add(F.frame, tvb:range(off, 9), t)
      ft:add(F.bind, tvb:range(off + 1, 8))
      summary[#summary + 1] = "BIND " .. tvb:range(off + 1, 8):uint64():tohex()
      off = off + 9
    else
      return false
    end
  end
  if pad > 0 then tree:add(F.padding, tvb:range(pad_start, pad), pad) end
  return true, summary
end

-- Plausibility of a datagram before claiming it (heuristic). Returns the trailer size or nil.
local function rudp_shape(tvb)
  local n = tvb:len()
  if n < 28 then return nil end
  if tvb:range(0, 1):uint() ~= 1 then return nil end
  local t = tvb:range(1, 1):uint()
  if pkt_types[t] == nil then return nil end
  local flags = tvb:range(2, 2):uint()
  if bit32.band(flags, 0xFFF8) ~= 0 then return nil end
  if bit32.band(flags, 0x0004) ~= 0 and bit32.band(flags, 0x0002) == 0 then return nil end
  if bit32.band(flags, 0x0002) ~= 0 then
    if n < 40 then return nil end
    return 16
  end
  return 4
end

local function dissect_rudp(tvb, pinfo, tree, known_crc_ok)
  local trailer = rudp_shape(tvb)
  if trailer == nil then return 0 end
  local n = tvb:len()
  local conn_hex = hex64(tvb:range(4, 8):uint64())
  local crc_ok = known_crc_ok
  if trailer == 4 and crc_ok == nil then
    crc_ok = crc32c(tvb, 0, n - 4) == tvb:range(n - 4, 4):uint()
  end
  pinfo.cols.protocol:set("ipsan-rudp")
  local t = tvb:range(1, 1):uint()
  local flags = tvb:range(2, 2):uint()
  local pn = tvb:range(16, 8):uint64()
  local st = tree:add(ipsan_rudp, tvb:range(0, n))
  st:add(F.version, tvb:range(0, 1))
  st:add(F.type, tvb:range(1, 1))
  local fl = st:add(F.flags, tvb:range(2, 2))
  fl:add(F.flag_ack_now, tvb:range(2, 2))
  fl:add(F.flag_protected, tvb:range(2, 2))
  fl:add(F.flag_encrypted, tvb:range(2, 2))
  st:add(F.conn_id, tvb:range(4, 8))
  st:add(F.epoch, tvb:range(12, 4))
  st:add(F.pn, tvb:range(16, 8))
  local info = string.format("%s conn=%s pn=%s", pkt_types[t], conn_hex, tostring(pn))
  if bit32.band(flags, 1) ~= 0 then info = info .. " ACK_NOW" end
  local body_end = n - trailer
  local ok = true
  local summary = nil
  if bit32.band(flags, 0x0004) ~= 0 then
    st:add(F.ciphertext, tvb:range(24, body_end - 24))
    info = info .. " [encrypted]"
  elseif t == 4 or t == 5 then
    -- u32 reason, then: RESET a 16-byte stateless-reset token (optional); a protected CLOSE
    -- zero padding up to 32 bytes before its tag.
    local blen = body_end - 24
    if blen < 4 then ok = false
    else
      st:add(F.reason, tvb:range(24, 4))
      info = info .. " reason=" .. (status_names[tvb:range(24, 4):uint()] or tostring(tvb:range(24, 4):uint()))
      if t == 4 and blen == 20 then
        st:add(F.reset_token, tvb:range(28, 16))
      elseif blen > 4 then
        if trailer ~= 16 or blen > 24 then ok = false end
        for i = 28, body_end - 1 do
          if tvb:range(i, 1):uint() ~= 0 then ok = false end
        end
        if ok then st:add(F.padding, tvb:range(28, blen - 4), blen - 4) end
      end
    end
  elseif t == 6 then
    if body_end - 24 ~= 24 then ok = false
    else
      local ct = st:add(F.cookie, tvb:range(24, 24))
      ct:add(F.cookie_time, tvb:range(24, 8))
    end
  else
    ok, summary = dissect_frames(tvb, pinfo, st, 24, body_end, conn_hex)
    if summary and #summary > 0 then info = info .. " " .. table.concat(summary, " ") end
  end
  if trailer == 4 then
    st:add(F.crc, tvb:range(n - 4, 4))
    st:add(F.crc_ok, crc_ok):set_generated()
    if not crc_ok then st:add_proto_expert_info(E_bad_crc) end
  else
    st:add(F.tag, tvb:range(n - 16, 16))
    info = info .. (bit32.band(flags, 0x0004) ~= 0 and "" or " [protected]")
  end
  if not ok then st:add_proto_expert_info(E_rudp_malformed); info = info .. " [malformed]" end
  st:append_text(": " .. info)
  pinfo.cols.info:set(info)
  -- Messages completed by this datagram.
  local done = state.done[pinfo.number]
  if done then
    for i, bytes in ipairs(done) do
      local ba = ByteArray.new(bytes, true)
      local mtvb = ba:tvb("Reassembled message " .. i)
      dissect_rpc(mtvb, pinfo, tree, conv_of(pinfo, "udp/" .. conn_hex))
    end
  end
  return n
end

local function heur_udp(tvb, pinfo, tree)
  local trailer = rudp_shape(tvb)
  if trailer == nil then return false end
  local n = tvb:len()
  local conn_hex = hex64(tvb:range(4, 8):uint64())
  if trailer == 4 then
    if crc32c(tvb, 0, n - 4) ~= tvb:range(n - 4, 4):uint() then return false end
    state.conns[conn_hex] = true
  elseif not state.conns[conn_hex] then
    return false  -- a protected packet of a connection never seen in clear (HELLO is CRC'd)
  end
  dissect_rudp(tvb, pinfo, tree, trailer == 4 or nil)
  return true
end

function ipsan_rudp.dissector(tvb, pinfo, tree) return dissect_rudp(tvb, pinfo, tree) end

-- ------------------------------------------------------------------------------ TCP ----
local function rm_pdu_len(tvb, pinfo, offset)
  local h = tvb:range(offset, 4):uint()
  return 4 + bit32.band(h, 0x7FFFFFFF)
end

local function rm_dissect_pdu(tvb, pinfo, tree)
  local h = tvb:range(0, 4):uint()
  local last = bit32.band(h, 0x80000000) ~= 0
  local len = bit32.band(h, 0x7FFFFFFF)
  local rt = tree:add(ipsan_rm, tvb:range(0, 4))
  rt:add(R.last, tvb:range(0, 4))
  rt:add(R.len, tvb:range(0, 4))
  local bk = key_of(pinfo, "tcp")
  local fk = pinfo.number .. "/" .. tostring(tvb:offset())
  if not pinfo.visited then
    local buf = state.rm_buf[bk] or {}
    buf[#buf + 1] = tvb:raw(4, len)
    if last then
      state.done[fk] = { table.concat(buf) }
      state.rm_buf[bk] = nil
    else
      state.rm_buf[bk] = buf
    end
  end
  local d = state.done[fk]
  if d then
    local mtvb = (#d[1] == len) and tvb:range(4, len):tvb() or ByteArray.new(d[1], true):tvb("Record")
    dissect_rpc(mtvb, pinfo, tree, conv_of(pinfo, "tcp"))
  else
    pinfo.cols.protocol:set("ipsan")
    pinfo.cols.info:set("record fragment")
  end
  return 4 + len
end

local function rm_dissector(tvb, pinfo, tree)
  dissect_tcp_pdus(tvb, tree, 4, rm_pdu_len, rm_dissect_pdu, true)
  return tvb:len()
end
function ipsan_rm.dissector(tvb, pinfo, tree) return rm_dissector(tvb, pinfo, tree) end

-- A TCP segment that starts with a record mark and an ipsan CALL (prog 0x20495341, rpcvers 2).
local function heur_tcp(tvb, pinfo, tree)
  if tvb:len() < 28 then return false end
  local h = tvb:range(0, 4):uint()
  local len = bit32.band(h, 0x7FFFFFFF)
  if len < 24 or len > 0x7FFFFFFF then return false end
  if tvb:range(8, 4):uint() ~= 0 or tvb:range(12, 4):uint() ~= 2 then return false end
  if tvb:range(16, 4):uint() ~= PROG then return false end
  pinfo.conversation = ipsan_rm  -- the rest of this connection, both ways
  rm_dissector(tvb, pinfo, tree)
  return true
end

ipsan_rudp:register_heuristic("udp", heur_udp)
ipsan_rm:register_heuristic("tcp", heur_tcp)
-- Explicit ports too (Decode As...): UDP and TCP 5260, the server's default.
DissectorTable.get("udp.port"):add_for_decode_as(ipsan_rudp)
DissectorTable.get("tcp.port"):add_for_decode_as(ipsan_rm)
