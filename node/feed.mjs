import feed from './feed.js'
export const { PgListener } = feed
