import { describe, expect, it } from 'vitest';
import { AbpError } from '../../src/domain/errors.js';
import { assertJobMove, canMoveJob, JOB_MOVES, JOB_STATES, UNIT_MOVES, UNIT_STATES, type JobMove } from '../../src/domain/states.js';

describe('the state table', () => {
  it('allows exactly the moves it lists, and names the job, its state and the move otherwise', () => {
    for (const move of Object.keys(JOB_MOVES) as JobMove[]) {
      for (const state of JOB_STATES) {
        const legal = (JOB_MOVES[move].from as readonly string[]).includes(state);
        expect(canMoveJob(state, move)).toBe(legal);
        if (legal) {
          expect(assertJobMove(7, state, move)).toBe(JOB_MOVES[move].to);
        } else {
          let error: unknown;
          try {
            assertJobMove(7, state, move);
          } catch (err) {
            error = err;
          }
          expect(error).toBeInstanceOf(AbpError);
          expect((error as AbpError).code).toBe('illegal_transition');
          expect((error as AbpError).message).toContain(`job 7 is ${state}`);
          expect((error as AbpError).message).toContain(`cannot ${move.replace('_', ' ')}`);
        }
      }
    }
  });

  it('has no move out of CANCELLED, only a one-unit re-do out of COMPLETED, and the designed moves between the others', () => {
    const from = (s: string) => Object.entries(JOB_MOVES).filter(([, r]) => (r.from as readonly string[]).includes(s)).map(([m]) => m).sort();
    expect(from('COMPLETED')).toEqual(['redo']);
    expect(from('CANCELLED')).toEqual([]);
    expect(from('CREATED')).toEqual(['cancel', 'skip_test', 'start_test']);
    expect(from('TESTING')).toEqual(['approve', 'cancel', 'reject']);
    expect(from('RUNNING')).toEqual(['cancel', 'complete', 'fail', 'pause']);
    expect(from('PAUSED')).toEqual(['cancel', 'resume']);
    expect(from('FAILED')).toEqual(['redo', 'retry']);
  });

  it('unit moves only use unit states, and only RUNNING units get an outcome', () => {
    for (const rule of Object.values(UNIT_MOVES)) {
      for (const s of rule.from) expect(UNIT_STATES).toContain(s);
      expect(UNIT_STATES).toContain(rule.to);
    }
    expect(UNIT_MOVES.succeed.from).toEqual(['RUNNING']);
    expect(UNIT_MOVES.fail.from).toEqual(['RUNNING']);
    expect(UNIT_MOVES.claim).toEqual({ from: ['PENDING'], to: 'RUNNING' });
  });
});
