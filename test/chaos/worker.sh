#!/bin/sh
# The chaos harness's shell worker: one run of one unit, with the unit's fault plan.
#
#   sh worker.sh RUNS_DIR ITEM ATTEMPT FAULT TIMES
#
# Every run appends records to RUNS_DIR/ITEM (O_APPEND, one short line per write):
#   start ATTEMPT PID MS          when the run begins
#   fault ATTEMPT PID MS KIND     just before it injects its fault
#   ok ATTEMPT PID MS             after it printed its answer, just before it exits 0
# The first TIMES runs that get as far as deciding inject FAULT; later runs answer.
# The plan is keyed on the runs of this item, not on the attempt number, so the
# expected final status of the unit is known in advance (see harness.ts). The faults
# nul, badutf8 and trickle are poisons: the harness plans them only with --poison.
ulimit -c 0
log="$1/$2"
attempt="$3"
now() { date +%s%3N; }
echo "start $attempt $$ $(now)" >>"$log"
faults=$(grep -c '^fault ' "$log")
if [ "$faults" -lt "$5" ]; then
  echo "fault $attempt $$ $(now) $4" >>"$log"
  case "$4" in
    fail)
      echo "planned failure of $2 (attempt $attempt)" >&2
      exit 3
      ;;
    hang)
      # Past the unit timeout: the executor must kill the whole process group.
      sleep 3600
      exit 0
      ;;
    crash)
      if [ $((attempt % 2)) -eq 0 ]; then kill -KILL $$; else kill -SEGV $$; fi
      ;;
    garbage)
      # Malformed output for a job with an output schema: no JSON at all, or JSON of the wrong shape.
      if [ $((attempt % 2)) -eq 0 ]; then echo "I could not do it, sorry"; else echo '{"answer": 42}'; fi
      exit 0
      ;;
    hugeout)
      # More stdout than the job's max_output_bytes.
      head -c 5000000 /dev/zero | tr '\0' 'x'
      exit 0
      ;;
    nul)
      # Poisoned (--poison): a NUL byte in the answer; it is stored as U+FFFD.
      printf '{"item":"%s","attempt":%s,"pid":%s,"junk":"a\000b"}\n' "$2" "$attempt" $$
      echo "ok $attempt $$ $(now)" >>"$log"
      exit 0
      ;;
    badutf8)
      # Poisoned: bytes that are not UTF-8 in the answer; each is stored as U+FFFD.
      printf '{"item":"%s","attempt":%s,"pid":%s,"junk":"a\377\376b\300\200"}\n' "$2" "$attempt" $$
      echo "ok $attempt $$ $(now)" >>"$log"
      exit 0
      ;;
    trickle)
      # Poisoned: output that never ends, a line every 200 ms, until the unit's timeout.
      i=0
      while :; do
        echo "tick $i" || exit 0
        i=$((i + 1))
        sleep 0.2
      done
      ;;
  esac
fi
if [ "$4" = bigout ]; then
  # Megabytes of log noise on stderr and of text on stdout, then the answer.
  head -c 3000000 /dev/zero | tr '\0' 'e' >&2
  head -c 1000000 /dev/zero | tr '\0' 'o'
  echo
fi
echo "{\"item\":\"$2\",\"attempt\":$attempt,\"pid\":$$}"
echo "ok $attempt $$ $(now)" >>"$log"
