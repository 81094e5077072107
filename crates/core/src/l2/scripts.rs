//! The Lua scripts, each taking one entry's records as `KEYS` so it runs
//! on the entry's slot (see `docs/architecture.md`).

use std::sync::OnceLock;

use redis::Script;

macro_rules! script {
    ($name:ident, $src:expr) => {
        pub(super) fn $name() -> &'static Script {
            static S: OnceLock<Script> = OnceLock::new();
            S.get_or_init(|| Script::new($src))
        }
    };
}

// KEYS[1]=value KEYS[2]=tomb KEYS[3]=dependency version; ARGV[1]=token
// ARGV[2]=tomb px ARGV[3]=channel ARGV[4]=bus message. The tombstone
// fences loads that started before this delete; deleting the dependency
// version makes every entry built from the key stale; the message evicts
// every other instance's L1 copy (and its known dependency version).
// Returns 1 if the key existed, plus 2 if something depended on it.
script!(
    delete_script,
    r"redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
local d = redis.call('DEL', KEYS[3])
local n = redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return n + 2 * d"
);

// KEYS[1]=value KEYS[2]=lease KEYS[3]=tomb KEYS[4]=dependency version;
// ARGV[1]=envelope ARGV[2]=px or '0' ARGV[3]=token ARGV[4]=tomb px
// ARGV[5]=channel ARGV[6]=bus message. A write; entries built from the
// key's previous value are stale from now (its dependency version is
// gone); if a load of the key is in flight somewhere (its fleet lease
// exists), a new fence token makes that load's late result lose to this
// write. Then every other instance evicts its L1 copy. Returns 1, plus 2
// if something depended on the key.
script!(
    set_script,
    r"if ARGV[2] == '0' then redis.call('SET', KEYS[1], ARGV[1])
else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
local d = redis.call('DEL', KEYS[4])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1 + 2 * d"
);

// KEYS[1]=version key; ARGV[1]=candidate ARGV[2]=channel ARGV[3]=bus
// message announcing the candidate ARGV[4]=px of a key dependency's record
// (set when created, renewed when read) or '0'.
// The current version of a tag, a key dependency or the namespace
// generation; created (and announced) if missing, so a version evicted
// from Redis is replaced by a new one, never by an old one.
script!(
    ensure_script,
    r"local v = redis.call('GET', KEYS[1])
if v then
  if ARGV[4] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
  return v
end
if ARGV[4] == '0' then redis.call('SET', KEYS[1], ARGV[1])
else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4]) end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return ARGV[1]"
);

// KEYS[1]=version key; ARGV[1]=new version ARGV[2]=channel ARGV[3]=bus
// message. Invalidate: a new random version, announced.
script!(
    bump_script,
    r"redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1"
);

// KEYS[1]=value KEYS[2]=tomb KEYS[3]=lease; ARGV[1]=envelope ARGV[2]=px
// or '0' ARGV[3]=fence ARGV[4]=lease token or '' ARGV[5]=channel
// ARGV[6]=bus message if stored ARGV[7]=bus message if refused (wakes the
// waiters without evicting anything). Stores only if no delete happened since the load
// began (the tombstone still holds the token seen at the start, or is
// still absent); releases the fleet lease if this load holds it; then
// tells the fleet (after the write, in the same atomic step, so a woken
// waiter always finds the value).
script!(
    complete_script,
    r"local stored = 0
local t = redis.call('GET', KEYS[2])
if (t or '') == ARGV[3] then
  if ARGV[2] == '0' then redis.call('SET', KEYS[1], ARGV[1])
  else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) end
  stored = 1
end
if ARGV[4] ~= '' and redis.call('GET', KEYS[3]) == ARGV[4] then
  redis.call('DEL', KEYS[3])
end
if stored == 1 then redis.call('PUBLISH', ARGV[5], ARGV[6])
else redis.call('PUBLISH', ARGV[5], ARGV[7]) end
return stored"
);

// KEYS[1]=value KEYS[2]=lease KEYS[3]=tomb; ARGV[1]=token ARGV[2]=px.
// Take the fleet lease and read the value in one atomic step, so a fill
// that lands between a caller's miss and its lease is never missed:
// {1, value, tombstone} when taken (the tombstone is the load's fence),
// {0, pttl, value} when someone holds it.
script!(
    acquire_script,
    r"if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('GET', KEYS[1]), redis.call('GET', KEYS[3])}
end
return {0, redis.call('PTTL', KEYS[2]), redis.call('GET', KEYS[1])}"
);

// KEYS[1]=lease; ARGV[1]=token ARGV[2]=px. Extend only our own lease.
script!(
    extend_script,
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0"
);

// KEYS[1]=lease; ARGV[1]=token ARGV[2]=channel ARGV[3]=bus message.
// Release only our own lease, and wake the fleet's waiters.
script!(
    release_script,
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0"
);

// KEYS[1]=value KEYS[2]=dependency version; ARGV[1]=delta ARGV[2]=channel
// ARGV[3]=bus message (published when an entry depended on the key). {0}
// missing, {2} not an integer/overflow, {1, n} new value. INCRBY keeps
// the key's TTL. The new value is returned as Redis stores it (a string):
// INCRBY's reply becomes a Lua double here, which is exact only up to 2^53.
script!(
    incr_script,
    r"local v = redis.call('GET', KEYS[1])
if not v then return {0} end
if not string.match(v, '^%-?%d+$') then return {2} end
local r = redis.pcall('INCRBY', KEYS[1], ARGV[1])
if type(r) == 'table' and r.err then return {2} end
local d = redis.call('DEL', KEYS[2])
if d == 1 then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return {1, redis.call('GET', KEYS[1]), d}"
);

// KEYS[1]=value KEYS[2]=dependency version; ARGV[1]=envelope ARGV[2]=px
// or '0' ARGV[3]=channel ARGV[4]=bus message. `add`: store only if
// absent; 1 when stored (then entries built from the key's absence are
// stale everywhere), plus 2 if something depended on that absence.
script!(
    add_script,
    r"local ok
if ARGV[2] == '0' then ok = redis.call('SET', KEYS[1], ARGV[1], 'NX')
else ok = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) end
if not ok then return 0 end
local d = redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1 + 2 * d"
);

// KEYS[1]=value; ARGV[1]=expected ARGV[2]=new ARGV[3]=px or '0'
// ARGV[4]=channel ARGV[5]=bus message (published when replaced).
script!(
    cas_script,
    r"if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then redis.call('SET', KEYS[1], ARGV[2])
else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1"
);

// KEYS[1]=lease; ARGV[1]=token ARGV[2]=px. Take the lease when free, renew
// it when ours: 1; 0 when another holder has it.
script!(
    hold_script,
    r"local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if v == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0"
);

// KEYS[1]=lease; ARGV[1]=token. Give the lease up if still ours.
script!(
    let_go_script,
    r"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0"
);
