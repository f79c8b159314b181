/**
 * Finds a key that could reach an object's prototype if a handler merged the payload into
 * another object: `__proto__` anywhere, or `prototype` under `constructor`. Returns its path
 * (`$.a.__proto__`) or undefined. Iterative, so a deeply nested payload cannot blow the stack.
 */
export function findForbiddenKey(root: unknown): string | undefined {
  const stack: Array<{ value: unknown; path: string; parentKey: string }> = [{ value: root, path: '$', parentKey: '' }];
  while (stack.length > 0) {
    const { value, path, parentKey } = stack.pop()!;
    if (value === null || typeof value !== 'object') continue;
    for (const key of Object.keys(value)) {
      if (key === '__proto__' || (key === 'prototype' && parentKey === 'constructor')) return `${path}.${key}`;
      stack.push({ value: (value as Record<string, unknown>)[key], path: `${path}.${key}`, parentKey: key });
    }
  }
  return undefined;
}
