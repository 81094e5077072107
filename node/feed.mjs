import feed from './feed.js'
export const { PgListener, EventListener } = feed
