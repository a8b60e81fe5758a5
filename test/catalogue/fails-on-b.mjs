/** A function-worker module for the bad-input catalogue: item b throws, the others succeed. */
export default function run(task) {
  if (task.item.id === 'b') throw new Error(`cannot handle item ${task.item.id}`);
  return `handled ${task.item.id}`;
}
