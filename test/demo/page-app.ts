/** A module with a kind and a `page` export: what GET / serves instead of the status page. */
export { room } from '../../src/demo/app.ts';
export const page = { html: '<!doctype html><title>page-app</title><p>an app page</p>' };
