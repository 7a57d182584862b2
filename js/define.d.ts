// Side effect only: registers <quota-widget>.
export {};
