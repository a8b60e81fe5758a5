#!/bin/sh
# The chaos harness's poisoned agent (--poison): a stand-in for an agent CLI that answers like a
# healthy one, or emits what the item's fault plan says instead. Two stream formats:
#
#   sh poison-agent.sh codex ITEM ATTEMPT FAULT TIMES   (agent-cli, preset codex: JSONL)
#   sh poison-agent.sh claude [claude's own arguments]  (claude: stream-json; the item, fault and
#        times come from the prompt on stdin, the attempt from the working directory, which the
#        job sets to .../{{unit.attempt}})
#
# Both answer the health checks abp makes before a job starts (--version; codex `login status`,
# claude `auth status`). The harness starts it through a wrapper it writes, which exports
# ABP_CHAOS_RUN, POISON_RUNS (the run records' folder) and the sizes below.
#
# Run records, as worker.sh writes them (see there): start / fault / ok, in RUNS_DIR/ITEM. A healthy
# answer is {"item", "attempt", "pid"}: the harness matches it to exactly one run.
#
# Faults (the first TIMES runs that get as far as deciding inject it; ALWAYS = every run):
#   badnums    codex: a 300-character thread id, then an object one; token counts "lots", -7, 1e400
#   badcost    claude: an object session_id; a cost of 1e400, -99999.99 or 1e300; usage "lots", -5
#   nul        a NUL byte in the answer (escaped in the JSON) and a raw one in a line that is not JSON
#   badutf8    bytes that are not UTF-8 in the answer and on a line of their own; a lone surrogate
#   flood      POISON_FLOOD events before the answer
#   longline   one line of POISON_LONGLINE bytes (past the 16 MiB a line is kept to), then the answer
#   hugeline   POISON_HUGELINE bytes without a newline, past max_output_bytes: no answer
#   deep       an event nested 100,000 arrays deep, then the answer
#   deepanswer the answer itself nested 100,000 arrays deep
#   proto      events whose type (and error) is {"toString": 1}: String() of it throws
#   trickle    an event every 200 ms, for ever (until the unit's timeout)
#   escape     the answer, with a child that left the process group (setsid) holding stdout open
#              for POISON_ESCAPE seconds; it carries ABP_CHAOS_ESCAPEE=1
ulimit -c 0
style="$1"
shift
case "$1" in
  --version) echo "0.0.0 (abp chaos poison agent)"; exit 0 ;;
esac
if [ "$style" = codex ] && [ "$1 $2" = "login status" ]; then echo "Logged in using an API key (chaos)"; exit 0; fi
if [ "$style" = claude ] && [ "$1" = auth ]; then echo '{"loggedIn":true,"authMethod":"chaos"}'; exit 0; fi
if [ "$style" = claude ]; then
  if [ -z "$POISON_TAGGED" ]; then
    # Read the prompt, then run again tagged with the unit and attempt (the /proc watcher reads them).
    prompt=$(cat)
    item=$(printf '%s' "$prompt" | sed -n 's/.*chaos item=\([^ ]*\).*/\1/p' | head -n 1)
    fault=$(printf '%s' "$prompt" | sed -n 's/.* fault=\([^ ]*\).*/\1/p' | head -n 1)
    times=$(printf '%s' "$prompt" | sed -n 's/.* times=\([0-9]*\).*/\1/p' | head -n 1)
    attempt=$(basename "$PWD")
    exec env POISON_TAGGED=1 ABP_CHAOS_UNIT="$item" ABP_CHAOS_ATTEMPT="$attempt" sh "$0" claude "$item" "$attempt" "$fault" "$times" </dev/null
  fi
else
  cat >/dev/null
fi
item="$1"
attempt="$2"
fault="$3"
times="$4"
# No item (a prompt cut short: its executor died while writing it): nothing to run, nothing to record.
if [ -z "$item" ] || [ -z "$fault" ] || [ -z "$times" ]; then
  echo "poison-agent: no item, fault or times given" >&2
  exit 2
fi
log="$POISON_RUNS/$item"
now() { date +%s%3N; }
echo "start $attempt $$ $(now)" >>"$log"
session="$item-$attempt"
# The answer, as text inside a JSON string: {"item", "attempt", "pid"} and, for some faults, "junk".
answer() { printf '{\\"item\\":\\"%s\\",\\"attempt\\":%s,\\"pid\\":%s%s}' "$item" "$attempt" "$$" "$1"; }

# The healthy stream, with the answer text (JSON-escaped, as it goes inside a JSON string) in $1.
healthy() {
  if [ "$style" = codex ]; then
    printf '{"type":"thread.started","thread_id":"th-%s"}\n' "$session"
    printf '{"type":"turn.started"}\n'
    printf '{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"%s"}}\n' "$1"
    printf '{"type":"turn.completed","usage":{"input_tokens":300,"cached_input_tokens":100,"output_tokens":40}}\n'
  else
    printf '{"type":"system","subtype":"init","session_id":"sess-%s"}\n' "$session"
    printf '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"%s"}]}}\n' "$1"
    printf '{"type":"result","subtype":"success","is_error":false,"result":"%s","session_id":"sess-%s","total_cost_usd":0.01,"usage":{"input_tokens":120,"output_tokens":30},"duration_ms":5}\n' "$1" "$session"
  fi
}
# N characters of C.
chars() { head -c "$1" /dev/zero | tr '\0' "$2"; }
ok() { echo "ok $attempt $$ $(now)" >>"$log"; exit 0; }

faults=$(grep -c '^fault ' "$log")
if [ "$fault" = none ] || [ "$faults" -ge "$times" ]; then
  healthy "$(answer)"
  ok
fi
echo "fault $attempt $$ $(now) $fault" >>"$log"
case "$fault" in
  badnums)
    printf '{"type":"thread.started","thread_id":"%s"}\n' "$(chars 300 s)"
    printf '{"type":"thread.started","thread_id":{"nested":{"id":1}}}\n'
    printf '{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":"%s"}}\n' "$(answer)"
    printf '{"type":"turn.completed","usage":{"input_tokens":"lots","cached_input_tokens":-7,"output_tokens":1e400}}\n'
    ok
    ;;
  badcost)
    case $((attempt % 3)) in
      0) cost=1e400 ;;
      1) cost=-99999.99 ;;
      *) cost=1e300 ;;
    esac
    printf '{"type":"system","subtype":"init","session_id":{"obj":[1,2,3]}}\n'
    printf '{"type":"assistant","message":{"role":"assistant","content":[{"type":"text","text":"%s"}]}}\n' "$(answer)"
    printf '{"type":"result","subtype":"success","is_error":false,"result":"%s","total_cost_usd":%s,"usage":{"input_tokens":"lots","output_tokens":-5,"cache_read_input_tokens":1e400},"duration_ms":-1}\n' "$(answer)" "$cost"
    ok
    ;;
  nul)
    printf 'not json: a raw \000 NUL byte\n'
    healthy "$(answer ',\"junk\":\"a\u0000b\"')"
    ok
    ;;
  badutf8)
    printf '\377\376 bytes that are not UTF-8 \300\200\n'
    healthy "$(answer ",\\\"junk\\\":\\\"a$(printf '\377\376')b \\ud800 c\\\"")"
    ok
    ;;
  flood)
    awk -v n="${POISON_FLOOD:-150000}" -v style="$style" 'BEGIN {
      for (i = 0; i < n; i++) {
        if (style == "codex") printf "{\"type\":\"item.completed\",\"item\":{\"id\":\"f%d\",\"type\":\"reasoning\",\"text\":\"tick %d\"}}\n", i, i
        else printf "{\"type\":\"assistant\",\"message\":{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"tick %d\"}]}}\n", i
      }
    }'
    healthy "$(answer)"
    ok
    ;;
  longline)
    chars "${POISON_LONGLINE:-20000000}" x
    echo
    healthy "$(answer)"
    ok
    ;;
  hugeline)
    chars "${POISON_HUGELINE:-268435456}" y
    exit 0
    ;;
  deep)
    printf '{"type":"deep","x":'
    chars 100000 '['
    chars 100000 ']'
    printf '}\n'
    healthy "$(answer)"
    ok
    ;;
  deepanswer)
    deep="$(chars 100000 '[')$(chars 100000 ']')"
    if [ "$style" = codex ]; then
      printf '{"type":"item.completed","item":{"id":"item_2","type":"agent_message","text":%s}}\n' "$deep"
    else
      printf '{"type":"result","subtype":"success","is_error":false,"result":%s,"total_cost_usd":0.01}\n' "$deep"
    fi
    exit 0
    ;;
  proto)
    printf '{"type":{"toString":1,"valueOf":1},"item":{"type":{"toString":1}}}\n'
    if [ "$style" = claude ]; then
      printf '{"type":"system","subtype":"api_retry","error":{"toString":1,"valueOf":1},"error_status":{"toString":1}}\n'
      printf '{"type":"assistant","message":{"content":[]},"error":{"toString":1,"valueOf":1}}\n'
    fi
    healthy "$(answer)"
    ok
    ;;
  trickle)
    i=0
    while :; do
      printf '{"type":"tick","n":%s}\n' "$i" || exit 0
      i=$((i + 1))
      sleep 0.2
    done
    ;;
  escape)
    ABP_CHAOS_ESCAPEE=1 setsid sh -c "sleep ${POISON_ESCAPE:-20}" &
    healthy "$(answer)"
    ok
    ;;
esac
healthy "$(answer)"
ok
