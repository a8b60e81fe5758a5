import { AbpError } from '../domain/errors.js';

/** A closed set of named implementations (enumerators, workers) with a lookup that names the field. */
export class Registry<T extends { readonly type: string }> {
  private readonly byType: ReadonlyMap<string, T>;

  constructor(
    private readonly field: string,
    entries: readonly T[],
  ) {
    this.byType = new Map(entries.map((e) => [e.type, e]));
  }

  get(type: string): T {
    const entry = this.byType.get(type);
    if (!entry) {
      throw new AbpError('invalid_input', `${this.field}: unknown type ${JSON.stringify(type)}; expected one of ${this.types().join(', ')}`);
    }
    return entry;
  }

  types(): string[] {
    return [...this.byType.keys()];
  }

  list(): T[] {
    return [...this.byType.values()];
  }
}
