import { Registry } from '../src/contracts/registry.js';
import type { Enumerator } from '../src/contracts/enumerator.js';
import { csvEnumerator } from './csv.js';
import { dynamicEnumerator } from './dynamic.js';
import { fileEnumerator } from './file.js';
import { jsonEnumerator } from './json.js';
import { sqlEnumerator } from './sql.js';

/** Every enumerator type. Adding one is a new file in this folder and one line here. */
export const enumerators = new Registry<Enumerator<any>>('enumerator_type', [
  fileEnumerator,
  csvEnumerator,
  sqlEnumerator,
  jsonEnumerator,
  dynamicEnumerator,
]);
