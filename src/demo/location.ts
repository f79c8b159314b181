import { siblingModule } from '../core/import-module.ts';

/** The demo app's module (`app.ts` from the sources, `app.js` once built), for `troupe demo` and `troupe cluster`. */
export const demoApp: URL = siblingModule(import.meta.url, './app');

/** The chat page and its `visitor` cookie session (`chat.ts`): what `troupe cluster` serves at `GET /` by default. */
export const chatApp: URL = siblingModule(import.meta.url, './chat');
